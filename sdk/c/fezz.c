/*
 * fezz.c -- C SDK for the fezz request-id plugin ABI. See fezz.h for the API and
 * docs/abi.md for the protocol. Needs libcurl (libcurl4-openssl-dev) and pthreads; no other
 * library: the JSON reader/writer and base64 below are just big enough for the ABI's shapes.
 */
#define _GNU_SOURCE
#include "fezz.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FEZZ_CONNECT_TIMEOUT_MS 5000L  /* 5 s to reach the admin listener */
#define FEZZ_CALL_TIMEOUT_MS 30000L    /* 30 s for one whole ABI call */
#define FEZZ_JSON_MAX_DEPTH 64

/* ---- per-thread error state ------------------------------------------------------------- */

static __thread char t_err[512];
static __thread int t_status;

const char *fezz_last_error(void) { return t_err; }
int fezz_last_status(void) { return t_status; }

void fezz_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_err, sizeof t_err, fmt, ap);
    va_end(ap);
}

static void clear_error(void) {
    t_err[0] = '\0';
    t_status = 0;
}

/* ---- growable byte buffer --------------------------------------------------------------- */

typedef struct buf {
    unsigned char *data;
    size_t len, cap;
} buf;

static int buf_reserve(buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_add(buf *b, const void *data, size_t len) {
    if (buf_reserve(b, len)) return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0'; /* always NUL-terminated */
    return 0;
}

static int buf_str(buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

static int buf_char(buf *b, char c) { return buf_add(b, &c, 1); }

/* ---- base64 (RFC 4648, standard alphabet, padded) ---------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_encode(buf *out, const unsigned char *in, size_t len) {
    if (buf_reserve(out, (len + 2) / 3 * 4)) return -1;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        char q[4] = {B64[v >> 18], B64[(v >> 12) & 63], B64[(v >> 6) & 63], B64[v & 63]};
        buf_add(out, q, 4);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        char q[4] = {B64[v >> 18], B64[(v >> 12) & 63], '=', '='};
        buf_add(out, q, 4);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        char q[4] = {B64[v >> 18], B64[(v >> 12) & 63], B64[(v >> 6) & 63], '='};
        buf_add(out, q, 4);
    }
    return 0;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes padded or unpadded base64; returns -1 on a character outside the alphabet. */
static int b64_decode(buf *out, const char *in, size_t len) {
    while (len > 0 && in[len - 1] == '=') len--;
    if (len % 4 == 1) return -1;
    if (buf_reserve(out, len / 4 * 3 + 3)) return -1;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_char(out, (char)((acc >> bits) & 0xff));
        }
    }
    return 0;
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* Strict validation (no overlongs, no surrogates, nothing above U+10FFFF), as the host does. */
static int utf8_valid(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (len - i - 1 < n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += n + 1;
    }
    return 1;
}

static int utf8_put(buf *b, uint32_t cp) {
    char o[4];
    size_t n;
    if (cp < 0x80) { o[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63)); n = 3;
    } else {
        o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
        o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63)); n = 4;
    }
    return buf_add(b, o, n);
}

/* ---- JSON writer ------------------------------------------------------------------------ */

/* Appends `s` as a quoted JSON string. Bytes >= 0x80 are copied as they are (UTF-8). */
static int json_put_string(buf *b, const char *s, size_t len) {
    if (buf_char(b, '"')) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;
        switch (c) {
        case '"': rc = buf_str(b, "\\\""); break;
        case '\\': rc = buf_str(b, "\\\\"); break;
        case '\n': rc = buf_str(b, "\\n"); break;
        case '\r': rc = buf_str(b, "\\r"); break;
        case '\t': rc = buf_str(b, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[8];
                snprintf(esc, sizeof esc, "\\u%04x", c);
                rc = buf_str(b, esc);
            } else {
                rc = buf_char(b, (char)c);
            }
        }
        if (rc) return -1;
    }
    return buf_char(b, '"');
}

/* ---- JSON reader (a small tree, enough for the ABI's objects) --------------------------- */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jval jval;
typedef struct jmember {
    char *key;
    jval *val;
} jmember;

struct jval {
    int type;
    char *s;          /* J_STR: decoded bytes (NUL-terminated); J_NUM: the number's text */
    size_t n;         /* length of s */
    int b;            /* J_BOOL */
    jval **items;     /* J_ARR */
    jmember *members; /* J_OBJ */
    size_t count;
};

typedef struct jparser {
    const char *p, *end;
    int depth;
} jparser;

static void jfree(jval *v) {
    if (!v) return;
    free(v->s);
    for (size_t i = 0; v->type == J_ARR && i < v->count; i++) jfree(v->items[i]);
    for (size_t i = 0; v->type == J_OBJ && i < v->count; i++) {
        free(v->members[i].key);
        jfree(v->members[i].val);
    }
    free(v->items);
    free(v->members);
    free(v);
}

static void jskip_ws(jparser *jp) {
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r'))
        jp->p++;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Parses a JSON string at jp->p (which is at '"') into `out`. */
static int jparse_string(jparser *jp, buf *out) {
    if (jp->p >= jp->end || *jp->p != '"') return -1;
    jp->p++;
    if (buf_reserve(out, 0)) return -1;
    out->data[out->len] = '\0';
    while (jp->p < jp->end) {
        unsigned char c = (unsigned char)*jp->p++;
        if (c == '"') return 0;
        if (c < 0x20) return -1;
        if (c != '\\') {
            if (buf_char(out, (char)c)) return -1;
            continue;
        }
        if (jp->p >= jp->end) return -1;
        char e = *jp->p++;
        int rc = 0;
        switch (e) {
        case '"': rc = buf_char(out, '"'); break;
        case '\\': rc = buf_char(out, '\\'); break;
        case '/': rc = buf_char(out, '/'); break;
        case 'b': rc = buf_char(out, '\b'); break;
        case 'f': rc = buf_char(out, '\f'); break;
        case 'n': rc = buf_char(out, '\n'); break;
        case 'r': rc = buf_char(out, '\r'); break;
        case 't': rc = buf_char(out, '\t'); break;
        case 'u': {
            uint32_t cp;
            if (jp->end - jp->p < 4 || hex4(jp->p, &cp)) return -1;
            jp->p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (jp->end - jp->p >= 6 && jp->p[0] == '\\' && jp->p[1] == 'u' &&
                    hex4(jp->p + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                    jp->p += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else {
                    cp = 0xfffd; /* lone high surrogate */
                }
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                cp = 0xfffd; /* lone low surrogate */
            }
            rc = utf8_put(out, cp);
            break;
        }
        default: return -1;
        }
        if (rc) return -1;
    }
    return -1;
}

static jval *jnew(int type) {
    jval *v = calloc(1, sizeof *v);
    if (v) v->type = type;
    return v;
}

static jval *jparse_value(jparser *jp);

static jval *jparse_object(jparser *jp) {
    jval *v = jnew(J_OBJ);
    size_t cap = 0;
    if (!v) return NULL;
    jp->p++; /* '{' */
    jskip_ws(jp);
    if (jp->p < jp->end && *jp->p == '}') { jp->p++; return v; }
    for (;;) {
        buf key = {0};
        jskip_ws(jp);
        if (jparse_string(jp, &key)) { free(key.data); goto fail; }
        jskip_ws(jp);
        if (jp->p >= jp->end || *jp->p != ':') { free(key.data); goto fail; }
        jp->p++;
        jval *item = jparse_value(jp);
        if (!item) { free(key.data); goto fail; }
        if (v->count == cap) {
            cap = cap ? cap * 2 : 8;
            jmember *m = realloc(v->members, cap * sizeof *m);
            if (!m) { free(key.data); jfree(item); goto fail; }
            v->members = m;
        }
        v->members[v->count].key = (char *)key.data;
        v->members[v->count].val = item;
        v->count++;
        jskip_ws(jp);
        if (jp->p < jp->end && *jp->p == ',') { jp->p++; continue; }
        if (jp->p < jp->end && *jp->p == '}') { jp->p++; return v; }
        goto fail;
    }
fail:
    jfree(v);
    return NULL;
}

static jval *jparse_array(jparser *jp) {
    jval *v = jnew(J_ARR);
    size_t cap = 0;
    if (!v) return NULL;
    jp->p++; /* '[' */
    jskip_ws(jp);
    if (jp->p < jp->end && *jp->p == ']') { jp->p++; return v; }
    for (;;) {
        jval *item = jparse_value(jp);
        if (!item) goto fail;
        if (v->count == cap) {
            cap = cap ? cap * 2 : 8;
            jval **it = realloc(v->items, cap * sizeof *it);
            if (!it) { jfree(item); goto fail; }
            v->items = it;
        }
        v->items[v->count++] = item;
        jskip_ws(jp);
        if (jp->p < jp->end && *jp->p == ',') { jp->p++; continue; }
        if (jp->p < jp->end && *jp->p == ']') { jp->p++; return v; }
        goto fail;
    }
fail:
    jfree(v);
    return NULL;
}

static int jmatch(jparser *jp, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, word, n) != 0) return 0;
    jp->p += n;
    return 1;
}

static jval *jparse_value(jparser *jp) {
    jskip_ws(jp);
    if (jp->p >= jp->end) return NULL;
    if (++jp->depth > FEZZ_JSON_MAX_DEPTH) return NULL;
    jval *v = NULL;
    char c = *jp->p;
    if (c == '{') v = jparse_object(jp);
    else if (c == '[') v = jparse_array(jp);
    else if (c == '"') {
        buf s = {0};
        if (jparse_string(jp, &s) == 0 && (v = jnew(J_STR))) {
            v->s = (char *)s.data;
            v->n = s.len;
        } else {
            free(s.data);
        }
    } else if (jmatch(jp, "true")) { if ((v = jnew(J_BOOL))) v->b = 1; }
    else if (jmatch(jp, "false")) { v = jnew(J_BOOL); }
    else if (jmatch(jp, "null")) { v = jnew(J_NULL); }
    else if (c == '-' || (c >= '0' && c <= '9')) {
        const char *start = jp->p;
        if (*jp->p == '-') jp->p++;
        size_t digits = 0;
        while (jp->p < jp->end && strchr("0123456789.eE+-", *jp->p)) { jp->p++; digits++; }
        if (digits > 0 && (v = jnew(J_NUM))) {
            v->n = (size_t)(jp->p - start);
            v->s = strndup(start, v->n);
            if (!v->s) { free(v); v = NULL; }
        }
    }
    jp->depth--;
    return v;
}

/* Parses a whole document; NULL when it is not valid JSON. */
static jval *jparse(const char *text, size_t len) {
    jparser jp = {text, text + len, 0};
    jval *v = jparse_value(&jp);
    jskip_ws(&jp);
    if (v && jp.p != jp.end) { jfree(v); v = NULL; }
    return v;
}

static jval *jget(const jval *obj, const char *key) {
    if (!obj || obj->type != J_OBJ) return NULL;
    for (size_t i = 0; i < obj->count; i++)
        if (strcmp(obj->members[i].key, key) == 0) return obj->members[i].val;
    return NULL;
}

/* Returns a malloc'd copy of the string member `key` ("" when absent or not a string). */
static char *jget_strdup(const jval *obj, const char *key) {
    const jval *v = jget(obj, key);
    if (v && v->type == J_STR) return strndup(v->s, v->n);
    return strdup("");
}

/* ---- HTTP (libcurl) ---------------------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_curl_key;
static CURLcode g_global_rc;

static void curl_key_destroy(void *handle) { curl_easy_cleanup((CURL *)handle); }

static void init_once(void) {
    g_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_key_create(&g_curl_key, curl_key_destroy);
}

/* One easy handle per thread, reused so that its connection to the host stays alive between
 * calls (the native runtime calls us from a fixed thread pool). */
static CURL *thread_curl(void) {
    pthread_once(&g_once, init_once);
    if (g_global_rc != CURLE_OK) return NULL;
    CURL *h = pthread_getspecific(g_curl_key);
    if (h) {
        curl_easy_reset(h);
        return h;
    }
    h = curl_easy_init();
    if (h) pthread_setspecific(g_curl_key, h);
    return h;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
    size_t n = size * nmemb;
    return buf_add((buf *)userp, data, n) ? 0 : n;
}

/*
 * Calls $FEZZ_HOST/admin/<endpoint>?request_id=<id>: a GET when body is NULL, else a POST of
 * `len` bytes of JSON. The answer's body goes to `resp`. Returns 0 for a 2xx answer; else
 * sets the thread's error (and status) and returns -1.
 */
static int host_call(const char *endpoint, int64_t id, const void *body, size_t len, buf *resp) {
    const char *host = getenv("FEZZ_HOST");
    const char *token = getenv("FEZZ_TOKEN");
    clear_error();
    if (!host || !*host) { fezz_set_error("FEZZ_HOST is not set"); return -1; }
    if (!token) { fezz_set_error("FEZZ_TOKEN is not set"); return -1; }
    size_t hlen = strlen(host);
    while (hlen > 0 && host[hlen - 1] == '/') hlen--;

    CURL *h = thread_curl();
    if (!h) { fezz_set_error("libcurl initialisation failed"); return -1; }

    char url[1024];
    snprintf(url, sizeof url, "%.*s/admin/%s?request_id=%" PRId64, (int)hlen, host, endpoint, id);
    buf auth = {0};
    if (buf_str(&auth, "Authorization: Bearer ") || buf_str(&auth, token)) {
        free(auth.data);
        fezz_set_error("out of memory");
        return -1;
    }
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, (const char *)auth.data);
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    if (body) headers = curl_slist_append(headers, "Content-Type: application/json");

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);     /* required with threads */
    curl_easy_setopt(h, CURLOPT_PROXY, "");        /* the admin listener is never proxied */
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, FEZZ_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, FEZZ_CALL_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }

    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    free(auth.data);

    if (rc != CURLE_OK) {
        fezz_set_error("%s %s: %s", body ? "POST" : "GET", url, curl_easy_strerror(rc));
        return -1;
    }
    if (status >= 200 && status < 300) return 0;

    /* The host's errors are {"error","code","message","statusCode"}. */
    jval *err = resp->len ? jparse((const char *)resp->data, resp->len) : NULL;
    const jval *code = jget(err, "code"), *msg = jget(err, "message");
    fezz_set_error("%s returned %ld%s%s%s%s", endpoint, status,
                   code && code->type == J_STR ? " " : "", code && code->type == J_STR ? code->s : "",
                   msg && msg->type == J_STR ? ": " : "", msg && msg->type == J_STR ? msg->s : "");
    t_status = (int)status;
    jfree(err);
    return -1;
}

/* ---- requests ---------------------------------------------------------------------------- */

void fezz_request_free(fezz_request *req) {
    if (!req) return;
    free(req->method);
    free(req->url);
    free(req->path);
    free(req->query);
    for (size_t i = 0; i < req->header_count; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    free(req->headers);
    free(req->body);
    memset(req, 0, sizeof *req);
}

int fezz_fetch_request(int64_t request_id, fezz_request *out) {
    buf resp = {0};
    memset(out, 0, sizeof *out);
    if (host_call("get-request-info", request_id, NULL, 0, &resp)) {
        free(resp.data);
        return -1;
    }
    jval *root = jparse((const char *)resp.data, resp.len);
    free(resp.data);
    if (!root || root->type != J_OBJ) {
        jfree(root);
        fezz_set_error("get-request-info: the host's answer is not a JSON object");
        return -1;
    }
    out->method = jget_strdup(root, "method");
    out->url = jget_strdup(root, "url");
    out->path = jget_strdup(root, "path");
    out->query = jget_strdup(root, "query");

    const jval *hs = jget(root, "headers");
    int oom = 0;
    if (hs && hs->type == J_OBJ && hs->count) {
        out->headers = calloc(hs->count, sizeof *out->headers);
        oom |= !out->headers;
        for (size_t i = 0; out->headers && i < hs->count; i++) {
            const jval *hv = hs->members[i].val;
            if (hv->type != J_STR) continue; /* the host only sends strings */
            fezz_header *h = &out->headers[out->header_count++];
            h->name = strdup(hs->members[i].key);
            h->value = strndup(hv->s, hv->n);
            oom |= !h->name || !h->value;
            for (char *c = h->name; c && *c; c++) *c = (char)tolower((unsigned char)*c);
        }
    }

    const jval *body = jget(root, "body"), *enc = jget(root, "bodyEncoding");
    const jval *streamed = jget(root, "bodyStreamed");
    buf bytes = {0};
    int bad = 0, fetch_failed = 0;
    if (streamed && streamed->type == J_BOOL && streamed->b) {
        /* A large or chunked upload: the raw bytes, read whole here, from get-request-body. */
        if (host_call("get-request-body", request_id, NULL, 0, &bytes)) fetch_failed = 1;
    } else if (body && body->type == J_STR) {
        if (enc && enc->type == J_STR && strcmp(enc->s, "base64") == 0)
            bad = b64_decode(&bytes, body->s, body->n);
        else
            bad = buf_add(&bytes, body->s, body->n);
    }
    if (!bytes.data && !bad) bad = buf_reserve(&bytes, 0);
    if (!bad) bytes.data[bytes.len] = '\0';
    out->body = bytes.data;
    out->body_len = bytes.len;

    const jval *dl = jget(root, "deadlineMs");
    if (dl && dl->type == J_NUM) {
        char *end;
        long long v = strtoll(dl->s, &end, 10);
        out->deadline_ms = *end ? (int64_t)strtod(dl->s, NULL) : (int64_t)v;
    }
    jfree(root);

    if (fetch_failed) {
        fezz_request_free(out);
        return -1; /* host_call set the error (get-request-body: status and message) */
    }
    if (bad || oom || !out->method || !out->url || !out->path || !out->query) {
        fezz_request_free(out);
        fezz_set_error(bad ? "get-request-info: bad body encoding" : "out of memory");
        return -1;
    }
    return 0;
}

const char *fezz_request_header(const fezz_request *req, const char *name) {
    for (size_t i = 0; i < req->header_count; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* ---- responses --------------------------------------------------------------------------- */

void fezz_response_init(fezz_response *resp, int status) {
    memset(resp, 0, sizeof *resp);
    resp->status = status;
}

int fezz_response_set_header(fezz_response *resp, const char *name, const char *value) {
    char *v = strdup(value);
    if (!v) return -1;
    for (size_t i = 0; i < resp->header_count; i++) {
        if (strcasecmp(resp->headers[i].name, name) == 0) {
            free(resp->headers[i].value);
            resp->headers[i].value = v;
            return 0;
        }
    }
    char *n = strdup(name);
    if (!n) { free(v); return -1; }
    for (char *c = n; *c; c++) *c = (char)tolower((unsigned char)*c);
    if (resp->header_count == resp->header_cap) {
        size_t cap = resp->header_cap ? resp->header_cap * 2 : 8;
        fezz_header *hs = realloc(resp->headers, cap * sizeof *hs);
        if (!hs) { free(n); free(v); return -1; }
        resp->headers = hs;
        resp->header_cap = cap;
    }
    resp->headers[resp->header_count].name = n;
    resp->headers[resp->header_count].value = v;
    resp->header_count++;
    return 0;
}

int fezz_response_set_body(fezz_response *resp, const void *data, size_t len) {
    unsigned char *copy = malloc(len + 1);
    if (!copy) return -1;
    if (len) memcpy(copy, data, len);
    copy[len] = '\0';
    free(resp->body);
    resp->body = copy;
    resp->body_len = len;
    return 0;
}

int fezz_response_set_text(fezz_response *resp, const char *text) {
    return fezz_response_set_body(resp, text, strlen(text));
}

void fezz_response_free(fezz_response *resp) {
    if (!resp) return;
    for (size_t i = 0; i < resp->header_count; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->headers);
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

int fezz_post_raw(int64_t request_id, const char *endpoint, const void *body, size_t len) {
    buf resp = {0};
    int rc = host_call(endpoint, request_id, body ? body : "", len, &resp);
    free(resp.data);
    return rc;
}

int fezz_push_response(int64_t request_id, const fezz_response *resp) {
    buf j = {0};
    char num[32];
    int bad = 0;
    snprintf(num, sizeof num, "%d", resp->status ? resp->status : 200);
    bad |= buf_str(&j, "{\"status\":") | buf_str(&j, num) | buf_str(&j, ",\"headers\":{");
    for (size_t i = 0; i < resp->header_count; i++) {
        if (i) bad |= buf_char(&j, ',');
        bad |= json_put_string(&j, resp->headers[i].name, strlen(resp->headers[i].name));
        bad |= buf_char(&j, ':');
        bad |= json_put_string(&j, resp->headers[i].value, strlen(resp->headers[i].value));
    }
    bad |= buf_str(&j, "},\"body\":");
    const unsigned char *b = resp->body ? resp->body : (const unsigned char *)"";
    if (utf8_valid(b, resp->body_len)) {
        bad |= json_put_string(&j, (const char *)b, resp->body_len);
        bad |= buf_str(&j, ",\"bodyEncoding\":\"utf8\"}");
    } else {
        bad |= buf_char(&j, '"') | b64_encode(&j, b, resp->body_len) | buf_char(&j, '"');
        bad |= buf_str(&j, ",\"bodyEncoding\":\"base64\"}");
    }
    if (bad) {
        free(j.data);
        clear_error();
        fezz_set_error("out of memory");
        return -1;
    }
    int rc = fezz_post_raw(request_id, "push-response-info", j.data, j.len);
    free(j.data);
    return rc;
}

int fezz_push_error(int64_t request_id, const char *message) {
    buf j = {0};
    if (!message) message = "";
    if (buf_str(&j, "{\"message\":") | json_put_string(&j, message, strlen(message)) | buf_char(&j, '}')) {
        free(j.data);
        clear_error();
        fezz_set_error("out of memory");
        return -1;
    }
    int rc = fezz_post_raw(request_id, "push-error-info", j.data, j.len);
    free(j.data);
    return rc;
}

/* ---- running handlers -------------------------------------------------------------------- */

/* What fezz_serve() knows about its in-flight handlers, to decide when it may return. */
typedef struct serve_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long inflight;         /* handlers started and not finished */
    long unfetched;        /* of those, handlers whose request (and so deadline) is unknown */
    int64_t max_deadline;  /* the latest deadline seen */
} serve_state;

static void track_fetched(serve_state *st, int64_t deadline_ms) {
    if (!st) return;
    pthread_mutex_lock(&st->mu);
    st->unfetched--;
    if (deadline_ms > st->max_deadline) st->max_deadline = deadline_ms;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static int handle_impl(int64_t id, fezz_handler_fn fn, void *user, serve_state *st) {
    fezz_request req;
    if (fezz_fetch_request(id, &req)) {
        fprintf(stderr, "fezz: request %" PRId64 ": fetch failed: %s\n", id, fezz_last_error());
        track_fetched(st, 0);
        return 1;
    }
    track_fetched(st, req.deadline_ms);

    fezz_response resp;
    fezz_response_init(&resp, 200);
    clear_error();
    int rc = fn(&req, &resp, user);
    int result = 0;
    if (rc != 0) {
        char msg[sizeof t_err + 64];
        if (t_err[0]) snprintf(msg, sizeof msg, "%s", t_err);
        else snprintf(msg, sizeof msg, "handler failed (returned %d)", rc);
        if (fezz_push_error(id, msg))
            fprintf(stderr, "fezz: request %" PRId64 ": push-error failed: %s\n", id, fezz_last_error());
        result = 1;
    } else if (fezz_push_response(id, &resp)) {
        fprintf(stderr, "fezz: request %" PRId64 ": push failed: %s\n", id, fezz_last_error());
        result = 1;
    }
    fezz_response_free(&resp);
    fezz_request_free(&req);
    return result;
}

int fezz_handle(int64_t request_id, fezz_handler_fn fn, void *user) {
    return handle_impl(request_id, fn, user, NULL);
}

typedef struct serve_job {
    int64_t id;
    fezz_handler_fn fn;
    void *user;
    serve_state *st;
} serve_job;

static void *serve_thread(void *arg) {
    serve_job job = *(serve_job *)arg;
    free(arg);
    handle_impl(job.id, job.fn, job.user, job.st);
    pthread_mutex_lock(&job.st->mu);
    job.st->inflight--;
    pthread_cond_broadcast(&job.st->cv);
    pthread_mutex_unlock(&job.st->mu);
    return NULL;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses "<decimal id>" (surrounding whitespace allowed) as a positive int64. */
static int parse_id(const char *line, int64_t *out) {
    while (isspace((unsigned char)*line)) line++;
    if (!isdigit((unsigned char)*line)) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(line, &end, 10);
    while (isspace((unsigned char)*end)) end++;
    if (errno || *end || v <= 0) return -1;
    *out = (int64_t)v;
    return 0;
}

int fezz_serve(fezz_handler_fn fn, void *user) {
    static serve_state st = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    char *line = NULL;
    size_t cap = 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_once(&g_once, init_once); /* curl_global_init before any thread starts */

    while (getline(&line, &cap, stdin) >= 0) {
        int64_t id;
        if (line[strspn(line, " \t\r\n")] == '\0') continue;
        if (parse_id(line, &id)) {
            fprintf(stderr, "fezz: ignoring a stdin line that is not a request id: %s", line);
            continue;
        }
        serve_job *job = malloc(sizeof *job);
        if (!job) { fprintf(stderr, "fezz: out of memory\n"); continue; }
        *job = (serve_job){id, fn, user, &st};
        pthread_mutex_lock(&st.mu);
        st.inflight++;
        st.unfetched++;
        pthread_mutex_unlock(&st.mu);
        pthread_t t;
        if (pthread_create(&t, &attr, serve_thread, job) != 0) {
            fprintf(stderr, "fezz: cannot start a thread; handling request %" PRId64 " inline\n", id);
            serve_thread(job);
        }
    }
    int failed = ferror(stdin);
    free(line);
    pthread_attr_destroy(&attr);

    /* EOF: let the in-flight handlers finish, but not past every one of their deadlines
     * (after which the host has answered 504 for them anyway). */
    pthread_mutex_lock(&st.mu);
    while (st.inflight > 0 && !(st.unfetched == 0 && now_ms() >= st.max_deadline)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L; /* re-check every 100 ms */
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&st.cv, &st.mu, &ts);
    }
    pthread_mutex_unlock(&st.mu);
    return failed ? -1 : 0;
}
