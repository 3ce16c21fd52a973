-- wrk script for Benchmarks/http_vs_kserve_nginx.sh: keep-alive KServe V1 predict on
-- models/trivial. Point wrk at http://HOST:PORT/v1/models/trivial:predict.
-- Deliberately no response() callback: it would run Lua per response and make wrk
-- parse every body, costing client CPU that the servers need on a 2-core machine.
-- wrk itself counts HTTP statuses >= 400 ("Non-2xx or 3xx responses: N", printed
-- only when N > 0) and socket errors ("Socket errors: connect N, read N, ...").
wrk.method = "POST"
wrk.body = '{"instances": [[0.0, 1.0, 2.0, 3.0]]}'
wrk.headers["Content-Type"] = "application/json"
