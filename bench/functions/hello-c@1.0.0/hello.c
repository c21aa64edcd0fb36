/*
 * hello-c: the bench's native-runtime function (runtime "native", entry libhello.so).
 * It must answer the same bytes as bench/servers/raw-node.mjs:
 *   /json -> 200 application/json {"message":"Hello, world!"}   (the json workload)
 *   other -> 200 text/plain;charset=UTF-8 Hello, world!          (the hello workload)
 * Build: bench/build-plugins.sh c (the bench runs it before starting fezz-native).
 */
#include <string.h>

#include "fezz.h"

static int hello(const fezz_request *req, fezz_response *resp, void *user) {
    (void)user;
    int json = strcmp(req->path, "/json") == 0;
    if (fezz_response_set_header(resp, "content-type", json ? "application/json" : "text/plain;charset=UTF-8") ||
        fezz_response_set_text(resp, json ? "{\"message\":\"Hello, world!\"}" : "Hello, world!")) {
        fezz_set_error("hello-c: out of memory");
        return 1;
    }
    return 0;
}

/* Exports int32_t fezz_handle_request(int64_t request_id). */
FEZZ_NATIVE_HANDLER(hello)
