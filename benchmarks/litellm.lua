-- wrk script for the LiteLLM proxy: the same chat completion every time, answered from LiteLLM's cache.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-gemcache-benchmark-master-key-0123456789"
wrk.body = '{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Why is the sky blue?"}]}'
