"""Onboarding a user: the README's example, runnable.

After ``create_user``, three branches run at once with
``on_error="complete_all"``: every branch finishes even if another fails, and
each outcome lands in ``__results__``. The welcome email is flaky and retried
with exponential backoff; when it still fails, ``complete`` routes the run to
``notify_support`` with ``goto`` instead of failing it.

Run it: ``python examples/onboarding.py``
"""

from __future__ import annotations

import asyncio

from flowdsl import (
    END,
    Context,
    Retry,
    Run,
    goto,
    ok,
    parallel,
    parallel_ok,
    parallel_result,
    run_workflow,
    sequence,
    step,
    workflow,
)


@workflow
def onboard_user() -> None:
    @step
    async def create_user(ctx: Context):
        return ok({"user_id": 42})  # a mapping is merged into the context

    with parallel(on_error="complete_all"):

        @step(retry=Retry(max_attempts=4, backoff="exponential", base=0.01))
        async def send_welcome_email(ctx: Context):
            # The fake mail server refuses the first `mail_outages` attempts.
            if ctx.attempt <= ctx.get("mail_outages", 0):
                raise ConnectionError("421 mail server busy, try again later")
            return ok({"email_sent": True})

        @step(returns="workspace")  # the branch's key in __results__
        async def provision_workspace(ctx: Context):
            await asyncio.sleep(0.02)
            return ok({"id": 7, "owner": ctx["user_id"]})

        with sequence("billing"):  # two steps, in order, as one branch

            @step
            async def create_customer(ctx: Context):
                return ok({"customer_id": "cus_1"})

            @step
            async def attach_plan(ctx: Context):
                return ok({"plan": f"{ctx['customer_id']}:free"})

    @step(routes=("notify_support",))
    async def complete(ctx: Context):
        if not parallel_ok(ctx, "send_welcome_email"):
            return goto("notify_support")
        return goto(END, {"onboarded": True})  # done: skip notify_support

    @step(timeout=5)
    def notify_support(ctx: Context):  # plain functions are steps too
        reason = parallel_result(ctx, "send_welcome_email").error
        return goto(END, {"onboarded": True, "support_ticket": f"welcome email failed: {reason}"})


def show(run: Run) -> None:
    """Print a run: its status, each step attempt with its duration, and the output."""
    print(f"{run.workflow}: {run.status} in {run.duration * 1000:.0f} ms")
    for attempt in run.steps:
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(
            f"  {attempt.name:<20} attempt {attempt.attempt}  {attempt.status:<9}"
            f" {attempt.duration * 1000:5.1f} ms{note}"
        )
    for key, value in run.output.items():
        print(f"  {key} = {value!r}")


def main() -> None:
    print("-- the mail server is busy twice, the third attempt gets through")
    show(run_workflow("onboard_user", {"name": "Ada", "mail_outages": 2}))
    print("-- the mail server is down: four attempts fail, support is told")
    show(run_workflow("onboard_user", {"name": "Grace", "mail_outages": 99}))


if __name__ == "__main__":
    main()
