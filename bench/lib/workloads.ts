/**
 * The workload table. Each row is one kind of request; every server must answer it with the
 * same status, content type and body bytes (checked before load, so a 404 is never measured).
 * Paths are fezz's isolate addressing; adapters map them for other servers.
 */
import type { Workload } from "./types.js";

export const HELLO_BODY = "Hello, world!";
/** The exact bytes `Response.json({ message: "Hello, world!" })` produces. */
export const JSON_BODY = JSON.stringify({ message: HELLO_BODY });

export const workloads: readonly Workload[] = [
  {
    name: "hello",
    path: "/rpc/hello",
    method: "GET",
    expect: { status: 200, contentType: "text/plain;charset=UTF-8", body: HELLO_BODY },
  },
  {
    name: "json",
    path: "/rpc/hello-json",
    method: "GET",
    expect: { status: 200, contentType: "application/json", body: JSON_BODY },
  },
];
