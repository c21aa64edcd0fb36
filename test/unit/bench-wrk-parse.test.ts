// wrk's Transfer/sec, read as MiB/s (bench/lib/wrk-parse.ts): the MB/s column of stream-1m.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseWrkOutput } from "../../bench/lib/wrk-parse.js";

const output = (transfer: string): string => `Running 1s test @ http://127.0.0.1:1/stream-1m
  Latency Distribution
     50%   90.00ms
     99%  661.11ms
  179 requests in 1.00s, 230.50MB read
Requests/sec:    179.00
Transfer/sec:    ${transfer}
`;

describe("parseWrkOutput Transfer/sec", () => {
  it("reads binary units as MiB/s, and leaves it out when absent", () => {
    assert.equal(parseWrkOutput(output("230.50MB")).readMbPerS, 230.5);
    assert.equal(parseWrkOutput(output("1.50GB")).readMbPerS, 1536);
    assert.equal(parseWrkOutput(output("512.00KB")).readMbPerS, 0.5);
    assert.equal(parseWrkOutput(output("").replace(/^Transfer.*$/m, "")).readMbPerS, undefined);
  });
});
