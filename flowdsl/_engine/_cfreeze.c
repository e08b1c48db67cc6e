/* flowdsl._engine._cfreeze: `freeze_plain` of plain JSON data, at C speed.
 *
 * The pure-Python copy in _context.py is the reference; this module is an
 * optional accelerator of its most common case and must give exactly what it
 * gives. It copies a value made only of exact dicts (str keys, no "$" key),
 * exact lists, str, int, bool, None and floats the journal writes as repr
 * does (finite, zero or of magnitude at least SMALL_FLOAT), in which every
 * container is met once and no container is taller than PLAIN_HEIGHT. Each
 * dict or list becomes the plain frozen class of its height, and the count
 * of parts is returned with it. Anything else (a tuple, a subclass, a shared
 * part, a small float, ...) makes it give up and return None, without
 * changing anything: the Python copy then takes over, and asks again for
 * each dict or list inside, handing over its memo (see copy_plain).
 *
 * It runs no Python code while it copies (the classes are dict and list subclasses
 * with no methods of their own on that path, and the collector is paused), so the
 * parts it borrows from `value` cannot change or go away under it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Set once by configure(): PLAIN_DICTS and PLAIN_LISTS (index = height), SMALL_FLOAT. */
static PyObject *plain_dicts = NULL;
static PyObject *plain_lists = NULL;
static Py_ssize_t plain_height = 0;
static double small_float = 0.0;
static PyObject *empty_tuple = NULL; /* the arguments of each class's tp_new */

/* The containers met so far, by address: a container met twice means a shared part or a
 * cycle, which the Python copy handles. Open addressing; the table only grows. */
typedef struct {
    uintptr_t *slots;
    size_t mask;
    size_t used;
} Seen;

static int
seen_grow(Seen *seen)
{
    size_t capacity = (seen->mask + 1) * 2;
    uintptr_t *slots = PyMem_Calloc(capacity, sizeof(uintptr_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i <= seen->mask; i++) {
        uintptr_t key = seen->slots[i];
        if (key != 0) {
            size_t at = (key >> 4) & (capacity - 1);
            while (slots[at] != 0) {
                at = (at + 1) & (capacity - 1);
            }
            slots[at] = key;
        }
    }
    PyMem_Free(seen->slots);
    seen->slots = slots;
    seen->mask = capacity - 1;
    return 0;
}

/* 1: added; 0: met before; -1: out of memory. The table is made when first needed. */
static int
seen_add(Seen *seen, PyObject *obj)
{
    if (seen->slots == NULL) {
        seen->slots = PyMem_Calloc(seen->mask + 1, sizeof(uintptr_t));
        if (seen->slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    else if ((seen->used + 1) * 2 > seen->mask + 1 && seen_grow(seen) < 0) {
        return -1;
    }
    uintptr_t key = (uintptr_t)obj;
    size_t at = (key >> 4) & seen->mask;
    while (seen->slots[at] != 0) {
        if (seen->slots[at] == key) {
            return 0;
        }
        at = (at + 1) & seen->mask;
    }
    seen->slots[at] = key;
    seen->used++;
    return 1;
}

typedef struct {
    Seen seen;
    Py_ssize_t size;
    PyObject *memo; /* the Python copy's memo (id -> copy) when it asked, else NULL */
    PyObject *made; /* then: the ids and copies made, in pairs, for the memo once done */
} Copy;

enum { GAVE_UP = 0, DONE = 1, FAILED = -1 };

static int copy_container(Copy *copy, PyObject *value, Py_ssize_t depth, PyObject **out,
                          Py_ssize_t *height);
static int copy_fresh(Copy *copy, PyObject *value, Py_ssize_t depth, PyObject **out,
                     Py_ssize_t *height);

static int
plain_float(PyObject *value)
{
    double x = PyFloat_AS_DOUBLE(value);
    return isfinite(x) && (x == 0.0 || fabs(x) >= small_float);
}

/* 1 when `value` is a scalar the journal writes as it is (kept, not copied), else 0. */
static int
plain_scalar(PyObject *value)
{
    PyTypeObject *kind = Py_TYPE(value);
    if (kind == &PyUnicode_Type || kind == &PyLong_Type || kind == &PyBool_Type ||
        value == Py_None) {
        return 1;
    }
    return kind == &PyFloat_Type && plain_float(value);
}

/* The copied containers inside a container, kept until its own copy is made. */
typedef struct {
    PyObject *where; /* the key (borrowed from the dict); NULL in a list, where: */
    Py_ssize_t index;
    PyObject *part;
} Replaced;

typedef struct {
    Replaced *items;
    Py_ssize_t used;
    Py_ssize_t capacity;
    Replaced first[8];
} Parts;

static int
parts_add(Parts *parts, PyObject *where, Py_ssize_t index, PyObject *part)
{
    if (parts->used == parts->capacity) {
        Py_ssize_t capacity = parts->capacity * 2;
        Replaced *items = PyMem_Malloc(capacity * sizeof(Replaced));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(items, parts->items, parts->used * sizeof(Replaced));
        if (parts->items != parts->first) {
            PyMem_Free(parts->items);
        }
        parts->items = items;
        parts->capacity = capacity;
    }
    parts->items[parts->used++] = (Replaced){where, index, part};
    return 0;
}

static void
parts_free(Parts *parts)
{
    for (Py_ssize_t i = 0; i < parts->used; i++) {
        Py_DECREF(parts->items[i].part);
    }
    if (parts->items != parts->first) {
        PyMem_Free(parts->items);
    }
}

/* 1 when a dict's key makes the journal write the dict as pairs (not a str) or as a tag. */
static int
unwritable_key(PyObject *key)
{
    return !PyUnicode_CheckExact(key) ||
           (PyUnicode_GET_LENGTH(key) == 1 && PyUnicode_READ_CHAR(key, 0) == '$');
}

/* 1 when `item` is a plain scalar or a dict or list (which may be plain), else 0. */
static int
maybe_plain(PyObject *item)
{
    return plain_scalar(item) || PyList_CheckExact(item) || PyDict_CheckExact(item);
}

/* 1 when every part of `value` (and key, for a dict) can be written as it is or is a dict or
 * list; 0 when one cannot. Checked first when the Python copy asks for the parts of a value
 * that was not all plain: giving up before any copy is made is cheap when what is not plain
 * sits next to plain data (a datetime in each row, say). */
static int
plain_level(PyObject *value)
{
    if (PyList_CheckExact(value)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
            if (!maybe_plain(PyList_GET_ITEM(value, i))) {
                return 0;
            }
        }
        return 1;
    }
    Py_ssize_t at = 0;
    PyObject *key, *item;
    while (PyDict_Next(value, &at, &key, &item)) {
        if (unwritable_key(key) || !maybe_plain(item)) {
            return 0;
        }
    }
    return 1;
}

/* One part of a container: a plain scalar is kept (nothing to do), a dict or list is copied
 * into `parts` (at `where`, a dict's key, or `index` in a list); anything else gives up. */
static int
copy_part(Copy *copy, PyObject *item, Py_ssize_t depth, Parts *parts, PyObject *where,
          Py_ssize_t index, Py_ssize_t *tallest)
{
    if (plain_scalar(item)) {
        return DONE;
    }
    if (!PyList_CheckExact(item) && !PyDict_CheckExact(item)) {
        return GAVE_UP;
    }
    PyObject *part;
    Py_ssize_t height;
    int status = copy_container(copy, item, depth + 1, &part, &height);
    if (status != DONE) {
        return status;
    }
    if (parts_add(parts, where, index, part) < 0) {
        Py_DECREF(part);
        return FAILED;
    }
    if (height > *tallest) {
        *tallest = height;
    }
    return DONE;
}

/* Copy the container parts of `value` into `parts` (its scalars are only checked): DONE,
 * GAVE_UP or FAILED, and the tallest part's height. */
static int
copy_parts(Copy *copy, PyObject *value, Py_ssize_t depth, Parts *parts, Py_ssize_t *tallest)
{
    int status;
    if (PyList_CheckExact(value)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
            status = copy_part(copy, PyList_GET_ITEM(value, i), depth, parts, NULL, i, tallest);
            if (status != DONE) {
                return status;
            }
        }
        copy->size += PyList_GET_SIZE(value);
        return DONE;
    }
    Py_ssize_t at = 0;
    PyObject *key, *item;
    while (PyDict_Next(value, &at, &key, &item)) {
        if (unwritable_key(key)) {
            return GAVE_UP;
        }
        status = copy_part(copy, item, depth, parts, key, 0, tallest);
        if (status != DONE) {
            return status;
        }
    }
    copy->size += 2 * PyDict_GET_SIZE(value);
    return DONE;
}

static int
copy_container(Copy *copy, PyObject *value, Py_ssize_t depth, PyObject **out,
               Py_ssize_t *height)
{
    if (depth >= plain_height) {
        return GAVE_UP; /* taller than the marks: the Python copy marks its parts */
    }
    /* Asked again inside a value that was not all plain: look before copying anything. */
    if (copy->memo != NULL && !plain_level(value)) {
        return GAVE_UP;
    }
    /* Held only by the container it was found in, it is met once in this value and the
     * Python copy never reaches it but through that container: nothing to look up or tell.
     * Held more than once, it may be shared or in a cycle. (No Python code runs while it
     * copies, and no part is referenced by the copy before it is looked at here, so the
     * counts are the value's own.) */
    if (Py_REFCNT(value) == 1) {
        return copy_fresh(copy, value, depth, out, height);
    }
    int added = seen_add(&copy->seen, value);
    if (added <= 0) {
        return added < 0 ? FAILED : GAVE_UP;
    }
    PyObject *id = NULL; /* `value`'s key in the memo, when there is one */
    if (copy->memo != NULL) {
        id = PyLong_FromVoidPtr(value);
        int known = id == NULL ? -1 : PyDict_Contains(copy->memo, id);
        if (known != 0) {
            Py_XDECREF(id); /* copied already, elsewhere: the Python copy shares that copy */
            return known < 0 ? FAILED : GAVE_UP;
        }
    }
    int status = copy_fresh(copy, value, depth, out, height);
    if (id != NULL) {
        if (status == DONE && (PyList_Append(copy->made, id) < 0 ||
                               PyList_Append(copy->made, *out) < 0)) {
            Py_DECREF(*out);
            status = FAILED;
        }
        Py_DECREF(id);
    }
    return status;
}

/* A list of class `type` (a list subclass with no slots of its own) holding what `value`
 * holds, in an array of exactly its length: what `type(value)` gives, without the calls. */
static PyObject *
copy_list(PyTypeObject *type, PyObject *value)
{
    PyObject *frozen = type->tp_alloc(type, 0);
    Py_ssize_t length = PyList_GET_SIZE(value);
    if (frozen == NULL || length == 0) {
        return frozen;
    }
    PyObject **items = PyMem_New(PyObject *, length);
    if (items == NULL) {
        Py_DECREF(frozen);
        return PyErr_NoMemory();
    }
    PyObject **from = ((PyListObject *)value)->ob_item;
    for (Py_ssize_t i = 0; i < length; i++) {
        items[i] = Py_NewRef(from[i]);
    }
    PyListObject *list = (PyListObject *)frozen;
    list->ob_item = items;
    list->allocated = length;
    Py_SET_SIZE(list, length);
    return frozen;
}

static int
copy_fresh(Copy *copy, PyObject *value, Py_ssize_t depth, PyObject **out, Py_ssize_t *height)
{
    Parts parts;
    parts.items = parts.first;
    parts.used = 0;
    parts.capacity = 8;
    Py_ssize_t tallest = 0;
    int status = copy_parts(copy, value, depth, &parts, &tallest);
    if (status != DONE) {
        parts_free(&parts);
        return status;
    }
    /* The frozen class of its height, made from `value` (copied in C, as `FrozenDict(value)`
     * does), then the copied containers put in place of the originals. Nothing here runs
     * Python code, so `value` cannot change between the two loops. */
    int is_list = PyList_CheckExact(value);
    PyObject *kind = PyTuple_GET_ITEM(is_list ? plain_lists : plain_dicts, tallest + 1);
    PyTypeObject *type = (PyTypeObject *)kind;
    PyObject *frozen = is_list ? copy_list(type, value) : type->tp_new(type, empty_tuple, NULL);
    if (frozen == NULL || (!is_list && PyDict_Merge(frozen, value, 1) < 0)) {
        Py_XDECREF(frozen);
        parts_free(&parts);
        return FAILED;
    }
    for (Py_ssize_t i = 0; i < parts.used; i++) {
        Replaced *replaced = &parts.items[i];
        if (is_list) { /* its own array, made above: the slot is replaced in place */
            PyObject **slot = &((PyListObject *)frozen)->ob_item[replaced->index];
            Py_SETREF(*slot, Py_NewRef(replaced->part));
        }
        else if (PyDict_SetItem(frozen, replaced->where, replaced->part) < 0) {
            parts_free(&parts);
            Py_DECREF(frozen);
            return FAILED;
        }
    }
    parts_free(&parts);
    /* It holds only scalars and plain copies made here, each met once: it can never be in
     * a reference cycle, so the collector need not follow it (CPython untracks a tuple or
     * a dict of scalars for the same reason). */
    PyObject_GC_UnTrack(frozen);
    *out = frozen;
    *height = tallest + 1;
    return DONE;
}

PyDoc_STRVAR(copy_plain_doc,
             "copy_plain(value, memo=None, /)\n--\n\n"
             "`freeze_plain` of a dict or list that is all plain JSON: (frozen, size), or None\n"
             "when it is not (the Python copy then does it). Given the Python copy's memo\n"
             "(id -> copy), it leaves a value holding a container the memo knows, and puts\n"
             "every copy it made in the memo when it is done.");

static PyObject *
copy_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (plain_dicts == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_cfreeze.configure() was not called");
        return NULL;
    }
    if (nargs < 1 || nargs > 2 || (nargs == 2 && !PyDict_CheckExact(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "copy_plain() takes a value and, optionally, a memo dict");
        return NULL;
    }
    PyObject *value = args[0];
    if (!PyList_CheckExact(value) && !PyDict_CheckExact(value)) {
        Py_RETURN_NONE;
    }
    Copy copy = {{NULL, 63, 0}, 0, nargs == 2 ? args[1] : NULL, NULL};
    if (copy.memo != NULL && (copy.made = PyList_New(0)) == NULL) {
        return NULL;
    }
    PyObject *frozen;
    Py_ssize_t height;
    /* No collection while it copies, so no finalizer or weakref callback (no Python code)
     * runs: the borrowed parts of `value` stay as they are until it is done. */
    int collecting = PyGC_Disable();
    int status = copy_container(&copy, value, 0, &frozen, &height);
    if (collecting) {
        PyGC_Enable();
    }
    PyMem_Free(copy.seen.slots); /* NULL when no table was needed: PyMem_Free allows it */
    /* Done: the memo learns every copy made, as the Python copy would have told it. */
    if (status == DONE && copy.made != NULL) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(copy.made); i += 2) {
            if (PyDict_SetItem(copy.memo, PyList_GET_ITEM(copy.made, i),
                               PyList_GET_ITEM(copy.made, i + 1)) < 0) {
                Py_DECREF(frozen);
                status = FAILED;
                break;
            }
        }
    }
    Py_XDECREF(copy.made);
    if (status == FAILED) {
        return NULL;
    }
    if (status == GAVE_UP) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(Nn)", frozen, copy.size);
}

/* The parts of a dict or list (any subclass), as `copy_plain` counts them: 2 for each dict
 * item, 1 for each list item, at every depth; once past `limit`, `limit + 1`. Only dicts and
 * lists are looked inside, and only through their own storage, so no Python code runs. */
static Py_ssize_t
parts_of(PyObject *value, Py_ssize_t limit, Py_ssize_t depth)
{
    if (depth >= plain_height) {
        return limit + 1; /* deeper than anything marked plain (as in copy_container) */
    }
    Py_ssize_t count = 0;
    if (PyList_Check(value)) {
        Py_ssize_t length = PyList_GET_SIZE(value);
        count = length;
        for (Py_ssize_t i = 0; i < length && count <= limit; i++) {
            PyObject *item = PyList_GET_ITEM(value, i);
            if (PyList_Check(item) || PyDict_Check(item)) {
                count += parts_of(item, limit - count, depth + 1);
            }
        }
    }
    else if (PyDict_Check(value)) {
        Py_ssize_t at = 0;
        PyObject *key, *item;
        while (count <= limit && PyDict_Next(value, &at, &key, &item)) {
            count += 2;
            if (PyList_Check(item) || PyDict_Check(item)) {
                count += parts_of(item, limit - count, depth + 1);
            }
        }
    }
    return count > limit ? limit + 1 : count;
}

PyDoc_STRVAR(count_parts_doc,
             "count_parts(value, limit, /)\n--\n\n"
             "How many parts a dict or list holds, at any depth, as copy_plain counts them\n"
             "(2 per dict item, 1 per list item); limit + 1 once past `limit`.");

static PyObject *
count_parts(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "count_parts() takes a value and an int limit");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "count_parts(): the limit must be 0 or more");
        }
        return NULL;
    }
    if (limit == PY_SSIZE_T_MAX) {
        limit = PY_SSIZE_T_MAX - 1; /* so that limit + 1 is still a count */
    }
    return PyLong_FromSsize_t(parts_of(args[0], limit, 0));
}

PyDoc_STRVAR(configure_doc,
             "configure(plain_dicts, plain_lists, small_float, /)\n--\n\n"
             "The frozen classes by height (index 0: the unmarked base) and SMALL_FLOAT.");

static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_CheckExact(args[0]) || !PyTuple_CheckExact(args[1]) ||
        PyTuple_GET_SIZE(args[0]) != PyTuple_GET_SIZE(args[1]) ||
        PyTuple_GET_SIZE(args[0]) < 2 || !PyFloat_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure() takes two tuples of classes of one length and a float");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 2; i++) {
        for (Py_ssize_t h = 0; h < PyTuple_GET_SIZE(args[i]); h++) {
            PyObject *kind = PyTuple_GET_ITEM(args[i], h);
            PyTypeObject *base = i == 0 ? &PyDict_Type : &PyList_Type;
            if (!PyType_Check(kind) || !PyType_IsSubtype((PyTypeObject *)kind, base) ||
                ((PyTypeObject *)kind)->tp_basicsize != base->tp_basicsize) {
                PyErr_SetString(PyExc_TypeError,
                                "configure(): the classes must be dict and list subclasses "
                                "with no slots of their own");
                return NULL;
            }
        }
    }
    if (empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL) {
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(plain_dicts, args[0]);
    Py_XSETREF(plain_lists, args[1]);
    plain_height = PyTuple_GET_SIZE(args[0]) - 1;
    small_float = PyFloat_AS_DOUBLE(args[2]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"copy_plain", (PyCFunction)(void (*)(void))copy_plain, METH_FASTCALL, copy_plain_doc},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL, configure_doc},
    {"count_parts", (PyCFunction)(void (*)(void))count_parts, METH_FASTCALL, count_parts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "flowdsl._engine._cfreeze",
    "freeze_plain of plain JSON data at C speed (optional; see _context.py).",
    -1,
    methods,
};

PyMODINIT_FUNC
PyInit__cfreeze(void)
{
    return PyModule_Create(&module);
}
