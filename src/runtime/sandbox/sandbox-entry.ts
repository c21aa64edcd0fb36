/**
 * The main module of a sandbox process (run by Node inside bubblewrap, bwrap.ts): the same
 * instance logic as a worker thread (worker-entry.ts), on this process's main thread, over
 * the fd-3 channel (port.ts), with the same lockdown. Bundled into one file with esbuild at
 * the host's start (sandbox-runtime.ts), since the sandbox sees nothing of fezz's install.
 */
import { runInstance } from '../isolate/worker-entry.js';
import { openHostPort } from './port.js';

runInstance(openHostPort(), true);
