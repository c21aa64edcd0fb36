// Warm state: module-level variables live as long as the instance. "min": 1 keeps one
// instance warm, so the count keeps growing until the host restarts or the version reloads.
import { threadId } from 'node:worker_threads';

let count = 0;
const startedAt = new Date().toISOString();

export default {
  fetch() {
    count += 1;
    return Response.json({ count, instance: threadId, startedAt });
  },
};
