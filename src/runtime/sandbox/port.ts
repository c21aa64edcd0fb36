/**
 * The sandbox process's end of its channel to the host: fd 3, a unix socket the host created
 * when it spawned the process (`stdio[3]: 'pipe'`). It looks like `parentPort` to
 * worker-entry.ts (`postMessage`, `on('message')`), with frames (framing.ts) underneath.
 * When the host closes its end (the host exited), the process exits.
 */
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { encodeFrame, FrameDecoder } from './framing.js';
import type { InstancePort } from '../isolate/protocol.js';

/** The descriptor the host hands a sandbox process for messages. */
export const CHANNEL_FD = 3;

/** Open the channel on fd 3. Call once, first thing in the sandbox process. */
export function openHostPort(): InstancePort {
  const socket = new net.Socket({ fd: CHANNEL_FD, readable: true, writable: true });
  const events = new EventEmitter();
  const decoder = new FrameDecoder((m) => events.emit('message', m));
  socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  // The host is gone (or wrote garbage): nothing more to serve.
  socket.on('end', () => process.exit(0));
  socket.on('error', () => process.exit(0));
  return {
    postMessage(message: unknown): void { socket.write(encodeFrame(message)); },
    on(event: 'message', listener: (message: any) => void): unknown { return events.on(event, listener); },
  };
}
