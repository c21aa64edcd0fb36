/**
 * The main module of a sandbox process (run by Node inside bubblewrap, bwrap.ts): the same
 * instance logic as a worker thread (worker-entry.ts), on this process's main thread, over
 * the fd-3 channel (port.ts), with the same lockdown. Bundled into one file with esbuild at
 * the host's start (sandbox-runtime.ts), since the sandbox sees nothing of fezz's install.
 */
import { Agent, setGlobalDispatcher } from 'undici';
import { runInstance } from '../isolate/worker-entry.js';
import { openHostPort } from './port.js';
import { egressConnector, EGRESS_SOCKET } from '../../egress/connector.js';
import { INBOX_MOUNT } from './bwrap.js';

// The sandbox's network namespace has only lo: every `fetch` goes out as CONNECT through the
// host's egress proxy (src/egress/proxy.ts), which enforces permissions.outbound. A function
// granted no host has no proxy socket, and its fetch fails with that reason.
setGlobalDispatcher(new Agent({ connect: egressConnector(`${INBOX_MOUNT}/${EGRESS_SOCKET}`) as never }));

runInstance(openHostPort(), true);
