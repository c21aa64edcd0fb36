/**
 * Imported once by every blank isolate worker while it waits as a spare (worker-entry.ts), so
 * that the ES module loader's file path is set up before a function's bundle is imported.
 * Like every bundle, it imports node:module. It does nothing else.
 */
import 'node:module';

export {};
