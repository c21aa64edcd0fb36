/* Unit tests for the C SDK's internals (JSON reader/writer, base64, UTF-8). `make check`. */
#include "fezz.c"

#include <assert.h>

static int failures;
#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static void test_base64(void) {
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    for (size_t n = 0; n < 40; n++) {
        buf enc = {0}, dec = {0};
        CHECK(b64_encode(&enc, all, n) == 0);
        CHECK(b64_decode(&dec, enc.data ? (char *)enc.data : "", enc.len) == 0);
        CHECK(dec.len == n && (n == 0 || memcmp(dec.data, all, n) == 0));
        free(enc.data);
        free(dec.data);
    }
    buf out = {0};
    CHECK(b64_encode(&out, (const unsigned char *)"fo", 2) == 0 && strcmp((char *)out.data, "Zm8=") == 0);
    free(out.data);
    buf bad = {0};
    CHECK(b64_decode(&bad, "Zm9v!", 5) != 0);
    free(bad.data);
}

static void test_utf8(void) {
    CHECK(utf8_valid((const unsigned char *)"h\xc3\xa9llo \xf0\x9f\x98\x80", 11));
    CHECK(!utf8_valid((const unsigned char *)"\xc3\x28", 2));         /* bad continuation */
    CHECK(!utf8_valid((const unsigned char *)"\xc0\xaf", 2));         /* overlong */
    CHECK(!utf8_valid((const unsigned char *)"\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!utf8_valid((const unsigned char *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    CHECK(!utf8_valid((const unsigned char *)"\xe2\x82", 2));         /* truncated */
    CHECK(utf8_valid((const unsigned char *)"a\0b", 3));
}

static void test_json(void) {
    const char *doc =
        " {\"method\":\"POST\",\"headers\":{\"x-a\":\"1\",\"x-b\":\"q\\\"\\\\\\n\\u00e9\\ud83d\\ude00\"},"
        "\"deadlineMs\":1764000000000,\"n\":[1,true,null,{\"z\":-2.5e3}],\"e\":\"\"} ";
    jval *v = jparse(doc, strlen(doc));
    CHECK(v && v->type == J_OBJ);
    const jval *h = jget(v, "headers");
    CHECK(h && h->type == J_OBJ && h->count == 2);
    const jval *b = jget(h, "x-b");
    CHECK(b && b->type == J_STR && strcmp(b->s, "q\"\\\n\xc3\xa9\xf0\x9f\x98\x80") == 0);
    const jval *d = jget(v, "deadlineMs");
    CHECK(d && d->type == J_NUM && strtoll(d->s, NULL, 10) == 1764000000000LL);
    CHECK(jget(v, "e") && jget(v, "e")->n == 0);
    jfree(v);

    const char *bad[] = {"{not json", "", "[1,]", "{\"a\" 1}", "\"\x01\"", "[1] 2", "tru", "{\"a\":\"\\x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        jval *x = jparse(bad[i], strlen(bad[i]));
        CHECK(x == NULL);
        jfree(x);
    }

    buf out = {0};
    CHECK(json_put_string(&out, "a\"b\\c\n\x01\xc3\xa9", 9) == 0);
    CHECK(strcmp((char *)out.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"") == 0);
    free(out.data);
}

static void test_response(void) {
    fezz_response r;
    fezz_response_init(&r, 201);
    CHECK(fezz_response_set_header(&r, "Content-Type", "a") == 0);
    CHECK(fezz_response_set_header(&r, "content-type", "b") == 0);
    CHECK(r.header_count == 1 && strcmp(r.headers[0].name, "content-type") == 0 && strcmp(r.headers[0].value, "b") == 0);
    CHECK(fezz_response_set_body(&r, "x\0y", 3) == 0 && r.body_len == 3);
    fezz_response_free(&r);
}

static void test_env(void) {
    unsetenv("FEZZ_HOST");
    fezz_request req;
    CHECK(fezz_fetch_request(1, &req) == -1);
    CHECK(strstr(fezz_last_error(), "FEZZ_HOST") != NULL && fezz_last_status() == 0);
}

int main(void) {
    test_base64();
    test_utf8();
    test_json();
    test_response();
    test_env();
    if (failures) {
        fprintf(stderr, "%d failed\n", failures);
        return 1;
    }
    printf("fezz C SDK: all unit tests passed\n");
    return 0;
}
