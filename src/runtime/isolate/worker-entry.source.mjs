// Used only when fezz runs from its TypeScript sources (tests, `node --import tsx`) with
// hardening off (FEZZ_ISOLATION_HARDENING=off): loader hooks registered on the main thread do
// not reach worker threads on Node 20, so register tsx here, then load the real worker entry.
// A hardened worker cannot register tsx (its hooks need a thread of their own, and workers are
// denied): it runs the entry bundled by permissions.ts instead. The compiled build never uses this.
import { register } from 'tsx/esm/api';

register();
await import('./worker-entry.ts');
