/*
 * Optional C twin of ipfix.facts.record_from_facts, for the common case.
 *
 * Building a record is the largest part of what the exporter costs the proxy per HTTP
 * exchange: in Python it is a few hundred bytecodes (~54,000 instructions on the
 * benchmark machine); here it is a few thousand instructions. The Python function stays
 * the reference and the tests compare both on generated facts. This code returns None,
 * and the caller takes the Python path, for anything out of the ordinary: a value of an
 * unexpected type, a number out of range, text with control characters (Python replaces
 * them), a flow id that is not a UUID. So whatever it returns, Python would have
 * returned the same; where it cannot be sure, it does not answer.
 *
 * Left to Python on purpose: the privacy rules (query redaction, cookie modes). The
 * record comes back with the raw query, and with the raw cookie only when the caller
 * exports cookies at all; the caller applies the rules before anyone sees the record.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

/* FlowFacts attributes, in FlowFacts' order. */
enum {
    F_FLOW_ID, F_NOW_MS, F_REQUEST_START, F_REQUEST_END, F_METHOD, F_PATH, F_HTTP_VERSION,
    F_AUTHORITY, F_HOST, F_REQUEST_HEADERS, F_UPLOADED, F_CLIENT, F_PROXY, F_UPSTREAM, F_SNI,
    F_TLS_VERSION, F_STATUS_CODE, F_REASON, F_RESPONSE_VERSION, F_RESPONSE_HEADERS,
    F_DOWNLOADED, F_RESPONSE_START, F_RESPONSE_END, F_TERMINATION_STATE, F_FLOW_END_REASON,
    F_COUNT
};
static const char *const fact_names[F_COUNT] = {
    "flow_id", "now_ms", "request_start", "request_end", "method", "path", "http_version",
    "authority", "host", "request_headers", "uploaded", "client", "proxy", "upstream", "sni",
    "tls_version", "status_code", "reason", "response_version", "response_headers",
    "downloaded", "response_start", "response_end", "termination_state", "flow_end_reason",
};

/* HttpFlowRecord fields, in its order: the record is built with these keywords. */
enum {
    R_FLOW_ID, R_START_MS, R_END_MS, R_CLIENT_ADDRESS, R_PROXY_ADDRESS, R_UPSTREAM_ADDRESS,
    R_CLIENT_PORT, R_PROXY_PORT, R_UPSTREAM_PORT, R_PROTOCOL, R_OCTETS, R_INITIATOR_OCTETS,
    R_RESPONDER_OCTETS, R_UPLOADED_BYTES, R_DOWNLOADED_BYTES, R_STATUS_CODE,
    R_FLOW_END_REASON, R_TERMINATION_STATE, R_UPSTREAM_TTFB_MS, R_METHOD, R_HOST, R_TARGET,
    R_QUERY, R_VERSION, R_REASON, R_USER_AGENT, R_CONTENT_TYPE, R_RESPONSE_CONTENT_TYPE,
    R_REFERRER, R_X_FORWARDED_FOR, R_COOKIE, R_TLS_SERVER_NAME, R_TLS_VERSION, R_COUNT
};
static const char *const record_names[R_COUNT] = {
    "flow_id", "start_ms", "end_ms", "client_address", "proxy_address", "upstream_address",
    "client_port", "proxy_port", "upstream_port", "protocol", "octets", "initiator_octets",
    "responder_octets", "uploaded_bytes", "downloaded_bytes", "status_code",
    "flow_end_reason", "termination_state", "upstream_ttfb_ms", "method", "host", "target",
    "query", "version", "reason", "user_agent", "content_type", "response_content_type",
    "referrer", "x_forwarded_for", "cookie", "tls_server_name", "tls_version",
};

/* Request headers the record keeps (the first of each), and where. */
enum { H_HOST, H_USER_AGENT, H_CONTENT_TYPE, H_REFERER, H_X_FORWARDED_FOR, H_COOKIE, H_COUNT };
static const char *const header_names[H_COUNT] = {
    "host", "user-agent", "content-type", "referer", "x-forwarded-for", "cookie",
};
static const char *const response_header_names[1] = {"content-type"};
static const int header_fields[H_COUNT] = {
    -1, R_USER_AGENT, R_CONTENT_TYPE, R_REFERRER, R_X_FORWARDED_FOR, R_COOKIE,
};

static PyObject *fact_keys[F_COUNT];
/* Where a FlowFacts keeps each attribute: msgspec stores fields in slots, read here
 * directly (attribute lookups by name were a third of this code's cost). */
static PyTypeObject *facts_type;
static Py_ssize_t fact_offsets[F_COUNT];
static PyObject *record_kwnames; /* tuple of the record's field names, in order */
static PyObject *empty_text, *any_v4, *any_v6, *mapped_prefix, *zero, *tcp, *udp;

#define FALLBACK 1 /* return value of helpers: not ours to answer, take the Python path */

/* ASCII-only case-insensitive equality, as bytes.lower() compares. */
static int ascii_caseeq(const char *data, Py_ssize_t size, const char *lower) {
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c >= 'A' && c <= 'Z') {
            c += 'a' - 'A';
        }
        if (c != (unsigned char)lower[i] || lower[i] == '\0') {
            return 0;
        }
    }
    return lower[size] == '\0';
}

/* facts._text: bytes as text a collector can show. Control characters make Python
 * replace them: those are left to it. Without them, decoding with "replace" is all. */
static int safe_text(PyObject *value, PyObject **out) {
    if (!PyBytes_CheckExact(value)) {
        return FALLBACK;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(value);
    Py_ssize_t size = PyBytes_GET_SIZE(value);
    int ascii = 1;
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F) {
            return FALLBACK;
        }
        ascii &= c < 0x80;
    }
    *out = ascii ? PyUnicode_DecodeASCII((const char *)p, size, NULL)
                 : PyUnicode_DecodeUTF8((const char *)p, size, "replace");
    return *out == NULL ? -1 : 0;
}

/* facts.ms: seconds (float, int, or None) as integer milliseconds, truncated as int() does. */
static int to_ms(PyObject *timestamp, long long *out) {
    if (timestamp == Py_None) {
        *out = 0;
        return 0;
    }
    if (PyLong_CheckExact(timestamp)) { /* flows made by scripts or tests */
        int overflow = 0;
        long long seconds = PyLong_AsLongLongAndOverflow(timestamp, &overflow);
        if (overflow || seconds > 9000000000000000LL || seconds < -9000000000000000LL) {
            return FALLBACK;
        }
        *out = seconds * 1000;
        return 0;
    }
    if (!PyFloat_CheckExact(timestamp)) {
        return FALLBACK;
    }
    double seconds = PyFloat_AS_DOUBLE(timestamp);
    double millis = seconds * 1000.0;
    if (seconds == 0.0) {
        *out = 0;
        return 0;
    }
    if (!isfinite(millis) || fabs(millis) >= 9.0e18) {
        return FALLBACK;
    }
    *out = (long long)millis;
    return 0;
}

/* A timestamp's truth, as Python's `if timestamp` (to_ms took the others to Python). */
static int is_set(PyObject *timestamp) {
    if (timestamp == Py_None) {
        return 0;
    }
    if (PyLong_CheckExact(timestamp)) {
        return PyObject_IsTrue(timestamp);
    }
    return PyFloat_AS_DOUBLE(timestamp) != 0.0;
}

/* facts.endpoint: (host, port) of an address tuple, IPv4-mapped IPv6 unwrapped and any zone
 * id dropped; host a new reference, port borrowed. */
static int endpoint(PyObject *address, PyObject **host, PyObject **port) {
    if (address == Py_None || (PyTuple_CheckExact(address) && PyTuple_GET_SIZE(address) == 0)) {
        *host = Py_NewRef(empty_text);
        *port = zero;
        return 0;
    }
    if (!PyTuple_CheckExact(address) || PyTuple_GET_SIZE(address) < 2) {
        return FALLBACK;
    }
    PyObject *text = PyTuple_GET_ITEM(address, 0);
    *port = PyTuple_GET_ITEM(address, 1);
    if (!PyUnicode_CheckExact(text) || !PyLong_CheckExact(*port)) {
        return FALLBACK;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    Py_ssize_t start = 0;
    Py_ssize_t mapped = PyUnicode_Tailmatch(text, mapped_prefix, 0, length, -1);
    if (mapped < 0) {
        return -1;
    }
    if (mapped && PyUnicode_FindChar(text, '.', 0, length, 1) >= 0) {
        start = 7;
    }
    Py_ssize_t end = PyUnicode_FindChar(text, '%', start, length, 1);
    if (end == -2) {
        return -1;
    }
    if (end < 0) {
        end = length;
    }
    *host = start == 0 && end == length ? Py_NewRef(text) : PyUnicode_Substring(text, start, end);
    return *host == NULL ? -1 : 0;
}

/* facts.flow_id_of: the first 64 bits of a UUID's hex digits. */
static int flow_id(PyObject *uuid, PyObject **out) {
    if (!PyUnicode_CheckExact(uuid) || !PyUnicode_IS_ASCII(uuid)) {
        return FALLBACK;
    }
    const char *p = (const char *)PyUnicode_DATA(uuid);
    Py_ssize_t length = PyUnicode_GET_LENGTH(uuid);
    unsigned long long value = 0;
    int digits = 0;
    for (Py_ssize_t i = 0; i < length && digits < 16; i++) {
        char c = p[i];
        int nibble;
        if (c == '-') {
            continue;
        }
        if (c >= '0' && c <= '9') {
            nibble = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            nibble = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            nibble = c - 'A' + 10;
        } else {
            return FALLBACK; /* int(..., 16) has its own ideas (signs, 0x, _): Python's */
        }
        value = value << 4 | (unsigned long long)nibble;
        digits++;
    }
    if (digits < 16) {
        return FALLBACK;
    }
    *out = PyLong_FromUnsignedLongLong(value);
    return *out == NULL ? -1 : 0;
}

/* A header list as mitmproxy keeps it: a tuple of (name, value) tuples of bytes. Adds the
 * bytes the head took on the wire to *head, and the first value (borrowed) of each header
 * in `names` to its slot in `wanted`; with `skip_empty`, the first value that is not
 * empty (its text is empty exactly when its bytes are). */
static int scan_headers(PyObject *headers, long long *head, const char *const *names,
                        PyObject **wanted, int count, int skip_empty) {
    if (!PyTuple_CheckExact(headers)) {
        return FALLBACK;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(headers);
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *pair = PyTuple_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            return FALLBACK;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        PyObject *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value)) {
            return FALLBACK;
        }
        *head += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4;
        for (int h = 0; h < count; h++) {
            if (wanted[h] == NULL && (!skip_empty || PyBytes_GET_SIZE(value) > 0) &&
                ascii_caseeq(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), names[h])) {
                wanted[h] = value;
                break;
            }
        }
    }
    return 0;
}

static int as_long_long(PyObject *value, long long *out) {
    if (!PyLong_CheckExact(value)) {
        return FALLBACK;
    }
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || *out < -(1LL << 60) || *out > (1LL << 60)) {
        return FALLBACK; /* sums below stay exact */
    }
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The slot offsets of `type`'s fields; FALLBACK when one is not a plain slot. */
static int learn_facts_type(PyTypeObject *type) {
    Py_ssize_t offsets[F_COUNT];
    for (int i = 0; i < F_COUNT; i++) {
        PyObject *descriptor = PyObject_GetAttr((PyObject *)type, fact_keys[i]);
        if (descriptor == NULL) {
            PyErr_Clear();
            return FALLBACK;
        }
        int plain = Py_IS_TYPE(descriptor, &PyMemberDescr_Type);
        if (plain) {
            PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
            plain = member->type == Py_T_OBJECT_EX && !(member->flags & Py_RELATIVE_OFFSET);
            offsets[i] = member->offset;
        }
        Py_DECREF(descriptor);
        if (!plain) {
            return FALLBACK;
        }
    }
    memcpy(fact_offsets, offsets, sizeof(offsets));
    Py_XSETREF(facts_type, (PyTypeObject *)Py_NewRef(type));
    return 0;
}

#define CHECK(call)                                                                          \
    do {                                                                                     \
        status = (call);                                                                     \
        if (status != 0) {                                                                   \
            goto done;                                                                       \
        }                                                                                    \
    } while (0)

#define SET(slot, expression)                                                                \
    do {                                                                                     \
        values[slot] = (expression);                                                         \
        if (values[slot] == NULL) {                                                          \
            status = -1;                                                                     \
            goto done;                                                                       \
        }                                                                                    \
    } while (0)

static PyObject *build_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "build_record(record_type, facts, reverse_without_host, keep_cookie)");
        return NULL;
    }
    PyObject *record_type = args[0], *facts = args[1];
    int reverse_without_host = PyObject_IsTrue(args[2]);
    int keep_cookie = PyObject_IsTrue(args[3]);
    if (reverse_without_host < 0 || keep_cookie < 0) {
        return NULL;
    }
    PyObject *f[F_COUNT]; /* borrowed from facts, which outlives this call */
    PyObject *values[R_COUNT] = {NULL};
    PyObject *record = NULL;
    int status = 0;
    if (Py_TYPE(facts) != facts_type) {
        CHECK(learn_facts_type(Py_TYPE(facts)));
    }
    for (int i = 0; i < F_COUNT; i++) {
        f[i] = *(PyObject **)((char *)facts + fact_offsets[i]);
        if (f[i] == NULL) {
            status = FALLBACK; /* unset: Python raises AttributeError */
            goto done;
        }
    }

    /* the request */
    PyObject *method = f[F_METHOD], *path = f[F_PATH], *version = f[F_HTTP_VERSION];
    if (!PyBytes_CheckExact(method) || !PyBytes_CheckExact(path) ||
        !PyBytes_CheckExact(version) || !PyBytes_CheckExact(f[F_AUTHORITY])) {
        status = FALLBACK;
        goto done;
    }
    long long head = PyBytes_GET_SIZE(method) + PyBytes_GET_SIZE(path) +
                     PyBytes_GET_SIZE(version) + 6; /* request line, blank line */
    PyObject *found[H_COUNT] = {NULL};
    CHECK(scan_headers(f[F_REQUEST_HEADERS], &head, header_names, found, H_COUNT, 0));
    PyObject *host = NULL;
    PyObject *sni = f[F_SNI];
    int has_sni = 0;
    if (sni != Py_None) {
        if (!PyUnicode_CheckExact(sni)) {
            status = FALLBACK;
            goto done;
        }
        has_sni = PyUnicode_GET_LENGTH(sni) > 0;
    }
    if (reverse_without_host && has_sni) {
        host = Py_NewRef(sni); /* mitmproxy rewrote Host to the upstream */
    } else if (PyBytes_GET_SIZE(f[F_AUTHORITY]) > 0) {
        CHECK(safe_text(f[F_AUTHORITY], &host));
    } else if (found[H_HOST] != NULL) {
        CHECK(safe_text(found[H_HOST], &host));
    } else if (PyUnicode_CheckExact(f[F_HOST])) {
        host = Py_NewRef(f[F_HOST]);
    } else {
        status = FALLBACK;
        goto done;
    }
    values[R_HOST] = host;
    PyObject *target;
    CHECK(safe_text(path, &target));
    values[R_TARGET] = target;
    Py_ssize_t question = PyUnicode_FindChar(target, '?', 0, PyUnicode_GET_LENGTH(target), 1);
    if (question == -2) {
        status = -1;
        goto done;
    }
    if (question >= 0) {
        SET(R_QUERY, PyUnicode_Substring(target, question + 1, PyUnicode_GET_LENGTH(target)));
        Py_SETREF(values[R_TARGET], PyUnicode_Substring(target, 0, question));
        if (values[R_TARGET] == NULL) {
            status = -1;
            goto done;
        }
    }
    long long uploaded;
    CHECK(as_long_long(f[F_UPLOADED], &uploaded));
    PyObject *client_host, *proxy_host, *upstream_host, *port;
    CHECK(endpoint(f[F_CLIENT], &client_host, &port));
    values[R_CLIENT_PORT] = Py_NewRef(port);
    values[R_CLIENT_ADDRESS] = client_host;
    CHECK(endpoint(f[F_PROXY], &proxy_host, &port));
    values[R_PROXY_PORT] = Py_NewRef(port);
    values[R_PROXY_ADDRESS] = proxy_host;
    CHECK(endpoint(f[F_UPSTREAM], &upstream_host, &port));
    values[R_UPSTREAM_PORT] = Py_NewRef(port);
    values[R_UPSTREAM_ADDRESS] = upstream_host;
    if (PyUnicode_GET_LENGTH(proxy_host) == 0) {
        Py_ssize_t colon = PyUnicode_FindChar(client_host, ':', 0,
                                              PyUnicode_GET_LENGTH(client_host), 1);
        if (colon == -2) {
            status = -1;
            goto done;
        }
        Py_SETREF(values[R_PROXY_ADDRESS], Py_NewRef(colon >= 0 ? any_v6 : any_v4));
    }
    if (PyUnicode_GET_LENGTH(client_host) == 0) {
        Py_SETREF(values[R_CLIENT_ADDRESS], Py_NewRef(any_v4));
    }
    CHECK(flow_id(f[F_FLOW_ID], &values[R_FLOW_ID]));
    long long start_ms;
    CHECK(to_ms(f[F_REQUEST_START], &start_ms));
    SET(R_START_MS, PyLong_FromLongLong(start_ms));
    int http3 = PyBytes_GET_SIZE(version) == 6 && memcmp(PyBytes_AS_STRING(version), "HTTP/3", 6) == 0;
    values[R_PROTOCOL] = Py_NewRef(http3 ? udp : tcp);
    SET(R_UPLOADED_BYTES, Py_NewRef(f[F_UPLOADED]));
    long long initiator = head + uploaded;
    SET(R_INITIATOR_OCTETS, PyLong_FromLongLong(initiator));
    CHECK(safe_text(method, &values[R_METHOD]));
    CHECK(safe_text(version, &values[R_VERSION]));
    for (int h = H_USER_AGENT; h < H_COUNT; h++) {
        if (h == H_COOKIE && !keep_cookie) {
            continue;
        }
        if (found[h] != NULL) {
            CHECK(safe_text(found[h], &values[header_fields[h]]));
        }
    }
    if (has_sni) {
        values[R_TLS_SERVER_NAME] = Py_NewRef(sni);
    }
    PyObject *tls_version = f[F_TLS_VERSION];
    if (tls_version != Py_None) {
        if (!PyUnicode_CheckExact(tls_version)) {
            status = FALLBACK;
            goto done;
        }
        values[R_TLS_VERSION] = Py_NewRef(tls_version);
    }
    values[R_TERMINATION_STATE] = Py_NewRef(f[F_TERMINATION_STATE]);
    values[R_FLOW_END_REASON] = Py_NewRef(f[F_FLOW_END_REASON]);
    values[R_END_MS] = Py_NewRef(f[F_NOW_MS]);

    /* the response, if any */
    PyObject *status_code = f[F_STATUS_CODE];
    if (status_code == Py_None) {
        values[R_OCTETS] = Py_NewRef(values[R_INITIATOR_OCTETS]);
    } else {
        if (!PyLong_CheckExact(status_code) || !PyBytes_CheckExact(f[F_RESPONSE_VERSION]) ||
            !PyBytes_CheckExact(f[F_REASON])) {
            status = FALLBACK;
            goto done;
        }
        long long response_head = PyBytes_GET_SIZE(f[F_RESPONSE_VERSION]) +
                                  PyBytes_GET_SIZE(f[F_REASON]) + 9; /* status line, blank */
        /* the first Content-Type whose text is not empty, as Python looks for it */
        PyObject *content_type = NULL;
        CHECK(scan_headers(f[F_RESPONSE_HEADERS], &response_head, response_header_names,
                           &content_type, 1, 1));
        if (content_type != NULL) {
            CHECK(safe_text(content_type, &values[R_RESPONSE_CONTENT_TYPE]));
        }
        long long downloaded, end_ms, response_start, request_end; /* 0: none */
        CHECK(as_long_long(f[F_DOWNLOADED], &downloaded));
        CHECK(to_ms(f[F_RESPONSE_END], &end_ms));
        CHECK(to_ms(f[F_RESPONSE_START], &response_start));
        CHECK(to_ms(f[F_REQUEST_END], &request_end));
        values[R_STATUS_CODE] = Py_NewRef(status_code);
        CHECK(safe_text(f[F_REASON], &values[R_REASON]));
        values[R_DOWNLOADED_BYTES] = Py_NewRef(f[F_DOWNLOADED]);
        SET(R_RESPONDER_OCTETS, PyLong_FromLongLong(response_head + downloaded));
        SET(R_OCTETS, PyLong_FromLongLong(initiator + response_head + downloaded));
        if (is_set(f[F_RESPONSE_END])) {
            Py_SETREF(values[R_END_MS], PyLong_FromLongLong(end_ms));
            if (values[R_END_MS] == NULL) {
                status = -1;
                goto done;
            }
        }
        if (is_set(f[F_RESPONSE_START]) && is_set(f[F_REQUEST_END])) {
            long long ttfb = response_start - request_end;
            SET(R_UPSTREAM_TTFB_MS, PyLong_FromLongLong(ttfb > 0 ? ttfb : 0));
        }
    }

    /* the rest as the record's defaults have them (the tests compare with Python's) */
    for (int i = 0; i < R_COUNT; i++) {
        if (values[i] == NULL) {
            values[i] = Py_NewRef(i >= R_METHOD ? empty_text : zero);
        }
    }
    /* positional, in the record's field order (ipfix.facts checks it at import): msgspec
     * matching 33 keyword names cost a quarter of this function */
    record = PyObject_Vectorcall(record_type, values, R_COUNT, NULL);
    if (record == NULL) {
        status = -1;
    }

done:
    for (int i = 0; i < R_COUNT; i++) {
        Py_XDECREF(values[i]);
    }
    if (status == FALLBACK) {
        Py_RETURN_NONE;
    }
    if (status != 0) {
        Py_XDECREF(record);
        return NULL;
    }
    return record;
}

static PyObject *record_fields(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return Py_NewRef(record_kwnames);
}

static PyMethodDef methods[] = {
    {"build_record", (PyCFunction)(void (*)(void))build_record, METH_FASTCALL,
     "build_record(record_type, facts, reverse_without_host, keep_cookie) -> record or None"},
    {"record_fields", record_fields, METH_NOARGS,
     "The record fields this code fills, in the order it knows them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_facts", "Optional C twin of ipfix.facts.record_from_facts.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__facts(void) {
    for (int i = 0; i < F_COUNT; i++) {
        fact_keys[i] = PyUnicode_InternFromString(fact_names[i]);
        if (fact_keys[i] == NULL) {
            return NULL;
        }
    }
    record_kwnames = PyTuple_New(R_COUNT);
    if (record_kwnames == NULL) {
        return NULL;
    }
    for (int i = 0; i < R_COUNT; i++) {
        PyObject *name = PyUnicode_InternFromString(record_names[i]);
        if (name == NULL) {
            return NULL;
        }
        PyTuple_SET_ITEM(record_kwnames, i, name);
    }
    empty_text = PyUnicode_FromString("");
    any_v4 = PyUnicode_InternFromString("0.0.0.0");
    any_v6 = PyUnicode_InternFromString("::");
    mapped_prefix = PyUnicode_FromString("::ffff:");
    zero = PyLong_FromLong(0);
    tcp = PyLong_FromLong(6);
    udp = PyLong_FromLong(17);
    if (!empty_text || !any_v4 || !any_v6 || !mapped_prefix || !zero || !tcp || !udp) {
        return NULL;
    }
    return PyModule_Create(&module);
}
