/**
 * The inline runtime's stand-in for a worker port: the same `Ws*` messages between the host's
 * side of a socket (host-end.ts) and the function's (function-socket.ts), in one realm.
 * Messages are delivered in order, a batch per event-loop turn (as a port would), never inside
 * the call that posts them: a function's `send()` in a message listener does not run the
 * host's socket code under it, and the other way round.
 */

/** A `post(message)` that calls `deliver(message)` later, in order, a turn's messages at once. */
export function deferredPost(deliver: (msg: unknown[]) => void): (msg: unknown[]) => void {
  let queue: unknown[][] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    const batch = queue;
    queue = [];
    for (const m of batch) deliver(m);
  };
  return (msg) => {
    queue.push(msg);
    if (!scheduled) { scheduled = true; setImmediate(flush); }
  };
}
