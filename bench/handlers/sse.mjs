// Suite `sse`: server-sent events fanned out. GET /sse?events=10&interval=100 answers
// `text/event-stream` at once (with a `: open` comment, so every server sends its head right
// away), then gets `events` events from a ticker shared by every open stream with the same
// interval: every `interval` ms one tick reaches every subscriber (a broadcast, the fan-out),
// and a stream closes after its `events`-th. Each event is
//
//   id: <n>
//   data: {"n":<n>,"t":<the tick's time>}
//
// where t = performance.timeOrigin + performance.now() (epoch ms, sub-millisecond) taken once
// per tick, before the loop over the subscribers: the client's receive time minus t is the
// delivery latency, the fan-out loop included. Shared by fezz, Bun, Deno and Hono. workerd
// cannot run it: a stream made by one request cannot be written from another request's timer
// there (a Durable Object is Workers' way). Raw node:http does the same natively
// (bench/servers/raw-node.mjs).
const encoder = new TextEncoder();
const headers = { "content-type": "text/event-stream", "cache-control": "no-store" };
const OPEN = encoder.encode(": open\n\n");
/** interval ms -> { subscribers: Set<(t) => void>, timer } */
const tickers = new Map();

const now = () => performance.timeOrigin + performance.now();

function subscribe(intervalMs, subscriber) {
  let ticker = tickers.get(intervalMs);
  if (ticker === undefined) {
    const t = { subscribers: new Set(), timer: undefined };
    t.timer = setInterval(() => {
      const at = now();
      for (const s of t.subscribers) s(at);
      if (t.subscribers.size === 0) {
        clearInterval(t.timer);
        tickers.delete(intervalMs);
      }
    }, intervalMs);
    tickers.set(intervalMs, t);
    ticker = t;
  }
  ticker.subscribers.add(subscriber);
  return () => ticker.subscribers.delete(subscriber);
}

/** `?events=` and `?interval=` of a request URL (defaults 10 and 100 ms). */
export function sseParams(url) {
  const query = url.indexOf("?");
  const params = new URLSearchParams(query === -1 ? "" : url.slice(query + 1));
  const events = Math.max(1, Math.min(10_000, Number(params.get("events") ?? 10) || 10));
  const interval = Math.max(1, Math.min(60_000, Number(params.get("interval") ?? 100) || 100));
  return { events, interval };
}

export default {
  fetch(request) {
    const { events, interval } = sseParams(request.url);
    let unsubscribe = () => {};
    return new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(OPEN.slice());
          let n = 0;
          unsubscribe = subscribe(interval, (t) => {
            n++;
            controller.enqueue(encoder.encode(`id: ${n}\ndata: {"n":${n},"t":${t}}\n\n`));
            if (n === events) {
              unsubscribe();
              controller.close();
            }
          });
        },
        cancel() {
          unsubscribe(); // the client left
        },
      }),
      { headers },
    );
  },
};
