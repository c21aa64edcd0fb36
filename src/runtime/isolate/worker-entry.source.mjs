// Used only when fezz runs from its TypeScript sources (tests, `node --import tsx`):
// loader hooks registered on the main thread do not reach worker threads on Node 20, so
// register tsx here, then load the real worker entry. The compiled build never uses this.
import { register } from 'tsx/esm/api';

register();
await import('./worker-entry.ts');
