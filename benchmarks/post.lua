-- wrk script: the same small generateContent request every time (a byte-identical repeat).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-goog-api-key"] = "benchmark-key"
wrk.body = '{"contents":[{"role":"user","parts":[{"text":"Why is the sky blue?"}]}]}'
