-- wrk script for every request that is not a plain GET (bench/lib/load-wrk.ts passes it with
-- -s): the method comes from BENCH_WRK_METHOD, and the body, byte for byte, from the file
-- named by BENCH_WRK_BODY_FILE (e.g. the 64 KiB echo body, or a todo's JSON). Headers are
-- given to wrk with -H. wrk builds the request once per connection from these fields, so
-- this costs nothing per request.
wrk.method = os.getenv("BENCH_WRK_METHOD") or "GET"

local file = os.getenv("BENCH_WRK_BODY_FILE")
if file ~= nil and file ~= "" then
  local f = assert(io.open(file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end
