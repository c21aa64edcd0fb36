/**
 * One HTTP request over a fresh connection (no agent, so nothing lingers in the bench process
 * between runs). Used for readiness polling and for checking a workload's answer before load.
 */
import { request } from "node:http";

export interface CheckResponse {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

export interface CheckOptions {
  readonly method?: string;
  readonly body?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Gives up after this many milliseconds. @default 2000 */
  readonly timeoutMs?: number;
}

/** Sends one request to `url`; rejects on a connection error or a timeout. */
export function httpCheck(url: string, options: CheckOptions = {}): Promise<CheckResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: options.method ?? "GET",
        headers: { ...options.headers, connection: "close" },
        agent: false,
        timeout: options.timeoutMs ?? 2000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers["content-type"] ?? ""),
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url} within ${options.timeoutMs ?? 2000} ms`)));
    req.on("error", reject);
    req.end(options.body);
  });
}
