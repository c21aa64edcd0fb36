// Types for bench/lib (TypeScript), which builds the expected `table` answer from this module.
export declare function renderTable(): string;
declare const handler: { fetch(): Response };
export default handler;
