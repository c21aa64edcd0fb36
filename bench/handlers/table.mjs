// Workload `table`: a CPU-heavier handler that renders a 100-row HTML table on every request
// (string building, HTML escaping, number formatting). Shared by fezz, Hono, Bun, Deno and
// workerd; raw node:http and Fastify import `renderTable` and send it their own way.
const ROWS = 100;
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (ch) => ESCAPES[ch]);

/** The page, rebuilt from scratch on each call (that is the work being measured). */
export function renderTable() {
  let rows = "";
  let total = 0;
  for (let i = 1; i <= ROWS; i++) {
    const name = `Item <${i}> & "friends"`;
    const qty = (i * 7) % 13 + 1;
    const price = ((i * 37) % 1000) / 10 + 0.99;
    total += qty * price;
    rows +=
      `<tr class="${i % 2 === 0 ? "even" : "odd"}"><td>${i}</td><td>${escapeHtml(name)}</td>` +
      `<td>${qty}</td><td>${price.toFixed(2)}</td><td>${(qty * price).toFixed(2)}</td></tr>\n`;
  }
  return (
    "<!doctype html>\n<html><head><title>Orders</title></head><body>\n<table>\n" +
    "<thead><tr><th>#</th><th>Item</th><th>Qty</th><th>Price</th><th>Amount</th></tr></thead>\n" +
    `<tbody>\n${rows}</tbody>\n<tfoot><tr><td colspan="4">Total</td><td>${total.toFixed(2)}</td></tr></tfoot>\n` +
    "</table>\n</body></html>\n"
  );
}

const headers = { "content-type": "text/html;charset=utf-8" };

export default {
  fetch() {
    return new Response(renderTable(), { headers });
  },
};
