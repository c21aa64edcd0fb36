/**
 * The public port of a `--workers` host on a Node without `reusePort` (Node 20): the primary
 * accepts each connection and hands it to the next serving host process in turn, the
 * round-robin of node:cluster, done here because node:cluster's own loses connections: when
 * a process dies, a connection already handed to it (but not yet taken) stays open in the
 * primary forever, and its client hangs (seen: 1 in 20 requests right after a kill -9).
 *
 * Here the primary keeps its copy of each connection until the process answers that it took
 * it (`took`, one small message per connection, as node:cluster's own `accepted`), and
 * closes every copy not taken when the process dies: the client sees the connection close
 * at once. If the channel is already closed, the next process gets it. A process that
 * drains (SIGTERM sent to it alone) is taken out of the turn first.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { Worker } from 'node:cluster';
import { isFezzMessage } from './ipc.js';

/** The message a handed connection comes with (the socket is the message's handle). */
export interface ConnMessage { fezz: 'conn'; id: number }
/** The process's answer: it holds connection `id` now. */
export interface TookMessage { fezz: 'took'; id: number }

export class ConnectionBalancer {
  readonly #server: net.Server;
  readonly #targets: () => Worker[];
  readonly #logger: Logger;
  #next = 0;
  #nextId = 1;
  readonly #held = new Map<Worker, Map<number, net.Socket>>();
  /** Connections closed because no process was serving. */
  dropped = 0;

  /** @param targets the processes that take connections now, in a stable order. */
  constructor(targets: () => Worker[], logger: Logger) {
    this.#targets = targets;
    this.#logger = logger;
    this.#server = net.createServer({ pauseOnConnect: true }, (socket) => this.#hand(socket, 0));
    this.#server.on('error', (err) => { if (this.#server.listening) logger.error({ err }, 'public listener error'); });
  }

  /** Bind `host:port` (0: any free port). @returns the bound port. @throws Error (EADDRINUSE, EACCES). */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ port, host, exclusive: true }, () => {
        this.#server.off('error', reject);
        resolve((this.#server.address() as net.AddressInfo).port);
      });
    });
  }

  #hand(socket: net.Socket, tried: number): void {
    const targets = this.#targets();
    if (targets.length === 0 || tried >= targets.length) {
      this.dropped++;
      if (this.dropped === 1 || this.dropped % 1000 === 0) this.#logger.error({ dropped: this.dropped }, 'no host process is serving: a public connection was closed');
      socket.destroy();
      return;
    }
    const worker = targets[this.#next++ % targets.length]!;
    // The primary keeps its copy of the connection until the process says it took it: if the
    // process dies first, workerGone() closes it (Node itself would keep it open forever).
    const id = this.#nextId++;
    this.#attach(worker).set(id, socket);
    const msg: ConnMessage = { fezz: 'conn', id };
    const failed = (): void => {
      this.#held.get(worker)?.delete(id);
      if (!socket.destroyed) this.#hand(socket, tried + 1);
    };
    try {
      // Not sent (the channel closed meanwhile): the next process gets it.
      worker.send(msg, socket, { keepOpen: true }, (err: Error | null) => { if (err) failed(); });
    } catch {
      failed();
    }
  }

  /** The connections sent to `worker` and not yet taken, by id; listens for its `took` messages. */
  #attach(worker: Worker): Map<number, net.Socket> {
    let held = this.#held.get(worker);
    if (held === undefined) {
      const map = new Map<number, net.Socket>();
      held = map;
      this.#held.set(worker, map);
      worker.on('message', (m: unknown) => {
        if (!isFezzMessage(m) || m.fezz !== 'took') return;
        const id = (m as TookMessage).id;
        // The process holds the connection now: close this process's copy only (the
        // connection stays open: it is the same socket, open in the other process).
        map.get(id)?.destroy();
        map.delete(id);
      });
    }
    return held;
  }

  /**
   * A process died: the connections it had not taken yet go to the others (a process takes a
   * connection in the tick it receives it, before reading from it, so none of its bytes were
   * read); with none serving, they are closed (their clients see the close at once).
   */
  workerGone(worker: Worker): void {
    const held = this.#held.get(worker);
    this.#held.delete(worker);
    for (const socket of held?.values() ?? []) if (!socket.destroyed) this.#hand(socket, 0);
  }

  /** Stop accepting (in-flight handovers finish). */
  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

