// The SSE suite's pure parts: the client's incremental HTTP/1.1 response reader and
// text/event-stream parser (bench/lib/sse-parse.ts), fed in every possible split, and the
// round a row shows (bench/lib/suite-sse.ts pickSse).
//   part of npm test
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { benchEventData, HttpResponseReader, SseParser, type SseEvent } from "../../bench/lib/sse-parse.js";
import { pickSse, type SseRow } from "../../bench/lib/suite-sse.js";

/** Feeds `bytes` to a fresh reader in pieces cut at `cuts`; returns the head, the body and done. */
function read(bytes: Buffer, cuts: readonly number[]): { status: number | null; body: string; done: boolean; reader: HttpResponseReader } {
  const reader = new HttpResponseReader();
  const body: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    body.push(...reader.push(bytes.subarray(from, cut)));
    from = cut;
  }
  return { status: reader.head?.status ?? null, body: Buffer.concat(body).toString("latin1"), done: reader.done, reader };
}

/** Every way of cutting `bytes` in two, plus byte-by-byte. */
function splits(length: number): number[][] {
  const out: number[][] = [[]];
  for (let i = 1; i < length; i++) out.push([i]);
  out.push(Array.from({ length: length - 1 }, (_, i) => i + 1));
  return out;
}

const chunked = Buffer.from(
  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "8\r\n: open\n\n\r\n" +
    "1D;ext=1\r\nid: 1\ndata: {\"n\":1,\"t\":5.5}\n\n\r\n" +
    "0\r\nx-trailer: y\r\n\r\n",
  "latin1",
);

describe("HttpResponseReader", () => {
  it("takes the chunked framing off, in any split, and sees the end", () => {
    for (const cuts of splits(chunked.length)) {
      const r = read(chunked, cuts);
      assert.equal(r.status, 200);
      assert.equal(r.body, ': open\n\nid: 1\ndata: {"n":1,"t":5.5}\n\n', `cuts ${cuts.join(",")}`);
      assert.equal(r.done, true);
      assert.equal(r.reader.head?.headers.get("content-type"), "text/event-stream");
    }
  });

  it("is not done before the last chunk, and says so at the connection's end", () => {
    const cut = chunked.indexOf("0\r\n", chunked.indexOf("1D;"));
    const r = read(chunked.subarray(0, cut), []);
    assert.equal(r.done, false);
    assert.equal(r.reader.end(), false);
  });

  it("reads content-length bodies, and bodies delimited by the connection's end", () => {
    const fixed = Buffer.from("HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnopeEXTRA");
    const r = read(fixed, [20]);
    assert.deepEqual([r.status, r.body, r.done], [404, "nopeE", true]);
    const open = read(Buffer.from("HTTP/1.0 200 OK\r\n\r\nsome bytes"), [22]);
    assert.deepEqual([open.body, open.done], ["some bytes", false]);
    assert.equal(open.reader.end(), true);
  });

  it("throws on what is not a response or a chunk", () => {
    assert.throws(() => new HttpResponseReader().push(Buffer.from("SSH-2.0-OpenSSH\r\n\r\n")), /not an HTTP/);
    assert.throws(
      () => new HttpResponseReader().push(Buffer.from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")),
      /bad chunk size/,
    );
    assert.throws(
      () => new HttpResponseReader().push(Buffer.from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXY")),
      /CRLF/,
    );
  });
});

describe("SseParser", () => {
  const stream = ': open\n\nid: 1\ndata: {"n":1}\n\nevent: tick\r\ndata:a\r\ndata: b\r\n\r\nretry: 10\n\n: only a comment\n\nid: 7\ndata\n\n';
  const want: SseEvent[] = [
    { id: "1", event: "message", data: '{"n":1}' },
    { id: "1", event: "tick", data: "a\nb" },
    { id: "7", event: "message", data: "" },
  ];

  it("dispatches at blank lines, in any split, skipping comments and data-less blocks", () => {
    for (const cuts of splits(stream.length)) {
      const parser = new SseParser();
      const got: SseEvent[] = [];
      let from = 0;
      for (const cut of [...cuts, stream.length]) {
        got.push(...parser.push(stream.slice(from, cut)));
        from = cut;
      }
      assert.deepEqual(got, want, `cuts ${cuts.join(",")}`);
    }
  });

  it("holds an event back until its blank line", () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push("data: x\n"), []);
    assert.deepEqual(parser.push("\n"), [{ id: null, event: "message", data: "x" }]);
  });
});

describe("benchEventData", () => {
  it("reads {n, t} and refuses anything else", () => {
    assert.deepEqual(benchEventData('{"n":3,"t":1733050000123.25}'), { n: 3, t: 1733050000123.25 });
    assert.equal(benchEventData('{"n":"3","t":1}'), null);
    assert.equal(benchEventData("not json"), null);
    assert.equal(benchEventData("null"), null);
  });
});

describe("pickSse", () => {
  const row = (round: number, p99: number | null, completed = 10): SseRow => ({
    server: "s",
    result:
      p99 === null
        ? null
        : {
            clients: 10, completed, events: completed * 2, expectedEvents: 20, p50Ms: 1, p99Ms: p99, maxMs: p99,
            openP50Ms: 1, openP99Ms: p99, openEvents: 1, openMs: 1, allDoneMs: 2, failures: {},
          },
    peakRssMb: 1, hostPeakRssMb: 1, children: [], error: p99 === null ? "wrong answer: x" : null, round, roundsP99Ms: [],
  });

  it("best: the lowest p99 among complete rounds; median: the lower middle; every round's p99 kept", () => {
    const rounds = [row(0, 30), row(1, 10, 9), row(2, 20), row(3, null), row(4, 40)];
    const best = pickSse(rounds, "best");
    assert.equal(best.round, 2); // round 1 is lower but lost a client
    assert.deepEqual(best.roundsP99Ms, [30, 10, 20, null, 40]);
    assert.equal(pickSse(rounds, "median").round, 0); // complete: 20, 30, 40
  });

  it("falls back to the first round's failure without any result", () => {
    const picked = pickSse([row(0, null), row(1, null)], "best");
    assert.equal(picked.error, "wrong answer: x");
    assert.deepEqual(picked.roundsP99Ms, [null, null]);
  });
});
