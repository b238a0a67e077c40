/*
 * Optional C building blocks, each the twin of a Python reference that the tests run
 * beside it (tests/test_speedups.py): the data-record encoder below, and `scan_headers`
 * and `safe_text` (ipfix/text.py) at the end. No business rule lives here.
 *
 * The encoder handles the common data-record shape: unsigned integers, IP addresses
 * given as text, and strings (variable-length, or fixed-width and NUL-padded).
 *
 * It does one thing the pure-Python RecordEncoder does too, only faster: the Python
 * encoder stays the reference, and the tests run both. Strings over their limit are cut
 * on a UTF-8 character boundary and counted, as in Python. Anything unusual (a value of
 * the wrong type, an integer out of range, text that is not encodable) returns None, and
 * the caller takes the Python path, which raises the proper errors.
 *
 * Plan: a bytes object of 6-byte entries, one per field: kind (1), length (2), limit (2),
 * pad (1); lengths and limits big-endian. Each entry takes the next value, except
 * KIND_UPTIME (NetFlow v9's FIRST/LAST_SWITCHED): its "limit" is the index of a value in
 * milliseconds, written as max(value - base, 0) mod 2^32, `base` being the third argument.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <string.h>

enum {
    KIND_UINT = 0, KIND_IPV4 = 1, KIND_IPV6 = 2, KIND_VARLEN = 3, KIND_FIXED_TEXT = 4,
    KIND_UPTIME = 5
};
#define ENTRY_SIZE 6
#define MAX_FIELDS 256

typedef struct {
    int kind;
    Py_ssize_t length; /* wire length (fixed kinds), 0xFFFF for varlen */
    Py_ssize_t limit;  /* most bytes of text allowed */
} field_t;

static int read_plan(PyObject *plan, field_t *fields, Py_ssize_t *count) {
    if (!PyBytes_Check(plan)) {
        PyErr_SetString(PyExc_TypeError, "plan must be bytes");
        return -1;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(plan);
    if (size % ENTRY_SIZE != 0 || size / ENTRY_SIZE > MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "malformed plan");
        return -1;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(plan);
    *count = size / ENTRY_SIZE;
    for (Py_ssize_t i = 0; i < *count; i++, p += ENTRY_SIZE) {
        fields[i].kind = p[0];
        fields[i].length = (p[1] << 8) | p[2];
        fields[i].limit = (p[3] << 8) | p[4];
        if (fields[i].kind > KIND_UPTIME
            || (fields[i].kind == KIND_UPTIME && fields[i].length != 4)) {
            PyErr_SetString(PyExc_ValueError, "unknown field kind in plan");
            return -1;
        }
    }
    return 0;
}

/* The longest prefix of UTF-8 `data` of at most `limit` bytes ending on a character. */
static Py_ssize_t utf8_cut(const char *data, Py_ssize_t size, Py_ssize_t limit) {
    if (size <= limit) {
        return size;
    }
    Py_ssize_t cut = limit;
    while (cut > 0 && (((unsigned char)data[cut]) & 0xC0) == 0x80) {
        cut--;
    }
    return cut;
}

/* The UTF-8 of a str (borrowed, cached by CPython), or NULL with no error set when the
 * value is not a str or not encodable (lone surrogates). */
static const char *utf8_of(PyObject *value, Py_ssize_t *size) {
    if (!PyUnicode_Check(value)) {
        return NULL;
    }
    const char *data = PyUnicode_AsUTF8AndSize(value, size);
    if (data == NULL) {
        PyErr_Clear();
    }
    return data;
}

static PyObject *encode(PyObject *self, PyObject *args) {
    PyObject *values, *plan;
    long long base = 0;
    field_t fields[MAX_FIELDS];
    PyObject *field_value[MAX_FIELDS]; /* borrowed; NULL for KIND_UPTIME */
    unsigned long long uptime[MAX_FIELDS];
    const char *text[MAX_FIELDS];
    Py_ssize_t text_size[MAX_FIELDS];
    Py_ssize_t count;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO|L", &values, &plan, &base)) {
        return NULL;
    }
    if (read_plan(plan, fields, &count) < 0) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(values, "values must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t value_count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t next_value = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (fields[i].kind != KIND_UPTIME) {
            if (next_value >= value_count) {
                goto fallback;
            }
            field_value[i] = items[next_value++];
            continue;
        }
        field_value[i] = NULL;
        if (fields[i].limit >= value_count || !PyLong_Check(items[fields[i].limit])) {
            goto fallback;
        }
        long long ms = PyLong_AsLongLong(items[fields[i].limit]);
        if (ms == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto fallback;
        }
        /* in unsigned arithmetic: no overflow whatever the base */
        uptime[i] = ms > base ? ((unsigned long long)ms - (unsigned long long)base) & 0xFFFFFFFFull
                              : 0;
    }
    if (next_value != value_count) {
        goto fallback;
    }

    /* First pass: check every value, cut long strings, size the record. */
    Py_ssize_t total = 0;
    Py_ssize_t cuts = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        field_t *f = &fields[i];
        PyObject *v = field_value[i];
        switch (f->kind) {
        case KIND_UPTIME:
            total += 4;
            break;
        case KIND_UINT:
            if (!PyLong_Check(v) || f->length < 1 || f->length > 8) {
                goto fallback;
            }
            total += f->length;
            break;
        case KIND_IPV4:
        case KIND_IPV6:
            if (!PyUnicode_Check(v)) {
                goto fallback;
            }
            total += f->kind == KIND_IPV4 ? 4 : 16;
            break;
        case KIND_VARLEN:
        case KIND_FIXED_TEXT: {
            Py_ssize_t limit = f->limit;
            if (f->kind == KIND_FIXED_TEXT && limit > f->length) {
                limit = f->length;
            }
            if (limit > 0xFFFF) {
                limit = 0xFFFF;
            }
            text[i] = utf8_of(v, &text_size[i]);
            if (text[i] == NULL) {
                goto fallback; /* not a str, or not encodable: Python decides */
            }
            if (text_size[i] > limit) {
                text_size[i] = utf8_cut(text[i], text_size[i], limit);
                cuts++;
            }
            if (f->kind == KIND_VARLEN) {
                total += (text_size[i] < 255 ? 1 : 3) + text_size[i];
            } else {
                total += f->length;
            }
            break;
        }
        }
    }

    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < count; i++) {
        field_t *f = &fields[i];
        PyObject *v = field_value[i];
        switch (f->kind) {
        case KIND_UPTIME:
            w[0] = (unsigned char)(uptime[i] >> 24);
            w[1] = (unsigned char)(uptime[i] >> 16);
            w[2] = (unsigned char)(uptime[i] >> 8);
            w[3] = (unsigned char)uptime[i];
            w += 4;
            break;
        case KIND_UINT: {
            int overflow = 0;
            unsigned long long n = PyLong_AsUnsignedLongLong(v);
            if (n == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear(); /* negative or wider than 64 bits */
                overflow = 1;
            }
            if (!overflow && f->length < 8 && (n >> (8 * f->length)) != 0) {
                overflow = 1;
            }
            if (overflow) {
                Py_DECREF(out);
                goto fallback;
            }
            for (Py_ssize_t b = f->length - 1; b >= 0; b--) {
                w[b] = (unsigned char)(n & 0xFF);
                n >>= 8;
            }
            w += f->length;
            break;
        }
        case KIND_IPV4:
        case KIND_IPV6: {
            Py_ssize_t size = f->kind == KIND_IPV4 ? 4 : 16;
            Py_ssize_t n;
            const char *s = PyUnicode_AsUTF8AndSize(v, &n);
            char buffer[64];
            if (s == NULL) {
                PyErr_Clear();
                Py_DECREF(out);
                goto fallback;
            }
            if (n == 0) { /* "" means no address: zeros */
                memset(w, 0, size);
            } else if (n >= (Py_ssize_t)sizeof(buffer)) {
                Py_DECREF(out);
                goto fallback;
            } else {
                memcpy(buffer, s, n);
                buffer[n] = '\0';
                if (inet_pton(f->kind == KIND_IPV4 ? AF_INET : AF_INET6, buffer, w) != 1) {
                    Py_DECREF(out);
                    goto fallback; /* the Python path raises EncodeError */
                }
            }
            w += size;
            break;
        }
        case KIND_VARLEN:
            if (text_size[i] < 255) {
                *w++ = (unsigned char)text_size[i];
            } else { /* RFC 7011 section 7: 255, then a two-byte length */
                *w++ = 0xFF;
                *w++ = (unsigned char)(text_size[i] >> 8);
                *w++ = (unsigned char)(text_size[i] & 0xFF);
            }
            memcpy(w, text[i], text_size[i]);
            w += text_size[i];
            break;
        case KIND_FIXED_TEXT:
            memcpy(w, text[i], text_size[i]);
            memset(w + text_size[i], 0, f->length - text_size[i]);
            w += f->length;
            break;
        }
    }
    Py_DECREF(seq);
    PyObject *result = Py_BuildValue("(Nn)", out, cuts);
    return result;

fallback:
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

/*
 * scan_headers(fields, names) -> (values, size): one pass over HTTP header fields, a tuple
 * of (name, value) bytes pairs. values[i] is the first value whose name equals names[i]
 * (lower-case bytes) ignoring ASCII case, or None; size is the block's size as HTTP/1.1
 * text (name, ": ", value, CRLF each). None for anything else than bytes pairs: the
 * Python reference (ipfix.text) answers then.
 */
#define MAX_NAMES 16

static PyObject *scan_headers(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyTuple_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan_headers(fields: tuple, names: tuple)");
        return NULL;
    }
    PyObject *fields = args[0], *names = args[1];
    Py_ssize_t name_count = PyTuple_GET_SIZE(names);
    if (name_count > MAX_NAMES) {
        PyErr_SetString(PyExc_ValueError, "too many header names");
        return NULL;
    }
    const char *wanted[MAX_NAMES];
    Py_ssize_t wanted_size[MAX_NAMES];
    PyObject *found[MAX_NAMES];
    for (Py_ssize_t i = 0; i < name_count; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyBytes_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "header names must be bytes");
            return NULL;
        }
        wanted[i] = PyBytes_AS_STRING(name);
        wanted_size[i] = PyBytes_GET_SIZE(name);
        found[i] = NULL;
    }
    Py_ssize_t size = 0, missing = name_count;
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *pair = PyTuple_GET_ITEM(fields, k);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_RETURN_NONE;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_Check(name) || !PyBytes_Check(value)) {
            Py_RETURN_NONE;
        }
        Py_ssize_t name_size = PyBytes_GET_SIZE(name);
        size += name_size + PyBytes_GET_SIZE(value) + 4;
        if (!missing) {
            continue;
        }
        const char *text = PyBytes_AS_STRING(name);
        for (Py_ssize_t i = 0; i < name_count; i++) {
            if (found[i] != NULL || wanted_size[i] != name_size) {
                continue;
            }
            Py_ssize_t j = 0;
            while (j < name_size) {
                unsigned char c = (unsigned char)text[j];
                if (c >= 'A' && c <= 'Z') {
                    c += 'a' - 'A';
                }
                if (c != (unsigned char)wanted[i][j]) {
                    break;
                }
                j++;
            }
            if (j == name_size) {
                found[i] = value;
                missing--;
                break;
            }
        }
    }
    PyObject *values = PyTuple_New(name_count);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < name_count; i++) {
        PyObject *value = found[i] != NULL ? found[i] : Py_None;
        Py_INCREF(value);
        PyTuple_SET_ITEM(values, i, value);
    }
    return Py_BuildValue("(Nn)", values, size);
}

/*
 * safe_text(data) -> str: UTF-8 bytes as text a collector can show. Invalid sequences
 * become U+FFFD (decoding with "replace"), and so do ASCII control characters but tab:
 * they are single bytes that no multi-byte sequence contains, so they are replaced by
 * U+FFFD's UTF-8 bytes before decoding, which gives the same text as the Python
 * reference (ipfix.text.python_safe_text).
 */
static PyObject *safe_text(PyObject *self, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "safe_text(data: bytes)");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    int ascii = 1;
    Py_ssize_t controls = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            ascii = 0;
        } else if ((c < 0x20 && c != '\t') || c == 0x7F) {
            controls++;
        }
    }
    if (!controls) {
        return ascii ? PyUnicode_DecodeASCII((const char *)p, size, "strict")
                     : PyUnicode_DecodeUTF8((const char *)p, size, "replace");
    }
    char *copy = PyMem_Malloc((size_t)(size + 2 * controls));
    if (copy == NULL) {
        return PyErr_NoMemory();
    }
    char *w = copy;
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = p[i];
        if (c < 0x80 && ((c < 0x20 && c != '\t') || c == 0x7F)) {
            *w++ = (char)0xEF; /* U+FFFD */
            *w++ = (char)0xBF;
            *w++ = (char)0xBD;
        } else {
            *w++ = (char)c;
        }
    }
    PyObject *text = PyUnicode_DecodeUTF8(copy, w - copy, "replace");
    PyMem_Free(copy);
    return text;
}

/*
 * hex64(text) -> int or None: the number the first 16 hex digits of `text` spell, dashes
 * skipped (a UUID's first 64 bits); None for anything else: the Python reference
 * (ipfix.text.python_hex64) answers then.
 */
static PyObject *hex64(PyObject *self, PyObject *text) {
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        Py_RETURN_NONE;
    }
    const char *p = (const char *)PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    unsigned long long value = 0;
    int digits = 0;
    for (Py_ssize_t i = 0; i < size && digits < 16; i++) {
        char c = p[i];
        int nibble;
        if (c >= '0' && c <= '9') {
            nibble = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            nibble = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            nibble = c - 'A' + 10;
        } else if (c == '-') {
            continue;
        } else {
            Py_RETURN_NONE;
        }
        value = (value << 4) | (unsigned long long)nibble;
        digits++;
    }
    if (digits != 16) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong(value);
}

/* safe_texts(values) -> tuple: safe_text of each bytes value of a tuple, "" for None. */
static PyObject *safe_texts(PyObject *self, PyObject *values) {
    if (!PyTuple_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "safe_texts(values: tuple)");
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(values);
    PyObject *out = PyTuple_New(count);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = PyTuple_GET_ITEM(values, i);
        PyObject *text = value == Py_None ? PyUnicode_New(0, 0) : safe_text(self, value);
        if (text == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, text);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode(values, plan, base=0) -> (record, strings cut) or None for the Python path."},
    {"scan_headers", (PyCFunction)(void (*)(void))scan_headers, METH_FASTCALL,
     "scan_headers(fields, names) -> (first value of each name or None, HTTP/1.1 size)"
     " or None for the Python path."},
    {"safe_text", safe_text, METH_O, "safe_text(data) -> text a collector can show."},
    {"hex64", hex64, METH_O,
     "hex64(text) -> the number of its first 16 hex digits (dashes skipped), or None."},
    {"safe_texts", safe_texts, METH_O,
     "safe_texts(values) -> safe_text of each bytes value of a tuple, '' for None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "Optional C building blocks: the IPFIX data-record encoder, a header scan, safe text.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
