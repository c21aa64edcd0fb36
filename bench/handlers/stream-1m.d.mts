// Types for bench/lib (TypeScript), which builds the expected `stream-1m` answer from this module.
export declare const CHUNK_BYTES: number;
export declare const CHUNKS: number;
export declare const STREAM_CHUNK: Uint8Array;
declare const handler: { fetch(): Response };
export default handler;
