extension ProxyConfiguration {
    /// The free-tier limits gemcache ships (SPEC §1, §6): the defaults of `limits.models`, and the table
    /// proxy.conf lists (a test keeps the two equal); the file overrides them model by model.
    ///
    /// Google no longer publishes one table (gemini-api.md §7.1), so each entry names its sources and
    /// their dates. Where sources disagree, the lower limits are used. A model with no known numbers is
    /// left out, so its limits show as `null` rather than made-up ones: the Gemini 3.x models (no free-tier
    /// numbers found), gemini-2.5-pro (sources contradict each other), and the 2.0 models (shut down on
    /// 2026-06-01).
    public static let builtInFreeTier: [String: ModelLimits] = [
        // 10 / 250,000 / 20 after the Dec 6–7, 2025 cut (quasa.io, 2025-12-10; rtila.com); the 250 RPD
        // of the mid-2025 copies of Google's table is the higher of the two.
        "gemini-2.5-flash": .init(rpm: 10, tpm: 250_000, rpd: 20),
        // 15 / 250,000 / 1,000 in the mid-2025 copies of Google's table; cut to 20 RPD after the
        // Dec 2025 change (quasa.io, 2025-12-10; not confirmed by Google): the lower is used.
        "gemini-2.5-flash-lite": .init(rpm: 15, tpm: 250_000, rpd: 20),
        // gemini-2.5-pro is left out: removed from the free tier in Dec 2025 (quasa.io, 2025-12-10) or
        // still 5 / 250,000 / 100 (aifreeapi.com, Jan 2026). Zeros would make `limits.enforce` refuse
        // every call if the second is right; null limits claim nothing.
        // 100 RPM and 1,000 RPD, "documented free tier" (discuss.ai.google.dev t/106517, 2025); TPM unconfirmed.
        "gemini-embedding-001": .init(rpm: 100, rpd: 1000),
        // Gemma 3: 30 / 15,000 / 14,400 in Google's table of ~May 2025 and its mid-2025 copies.
        "gemma-3-1b-it": .init(rpm: 30, tpm: 15000, rpd: 14400),
        "gemma-3-4b-it": .init(rpm: 30, tpm: 15000, rpd: 14400),
        "gemma-3-12b-it": .init(rpm: 30, tpm: 15000, rpd: 14400),
        "gemma-3-27b-it": .init(rpm: 30, tpm: 15000, rpd: 14400),
    ]

    /// The paid prices gemcache ships, USD per million tokens (standard, non-batch), for `saved_usd`: the
    /// defaults of `prices`, and the table proxy.conf lists; the file overrides them model by model.
    /// Where a price has tiers, the lower one (prompts up to 200k tokens, text input) is used.
    public static let builtInPrices: [String: ModelPrice] = [
        // simonw/llm-prices data/google.json (commit 014a62d); api-evangelist/gemini pricing (2026-09-20).
        "gemini-2.5-pro": .init(input: 1.25, output: 10.00),
        "gemini-2.5-flash": .init(input: 0.30, output: 2.50),
        "gemini-2.5-flash-lite": .init(input: 0.10, output: 0.40),
        "gemini-3-flash-preview": .init(input: 0.50, output: 3.00),
        "gemini-3.1-pro-preview": .init(input: 2.00, output: 12.00),
        "gemini-3.1-flash-lite": .init(input: 0.25, output: 1.50),
        "gemini-3.5-flash": .init(input: 1.50, output: 9.00),
        "gemini-3.5-flash-lite": .init(input: 0.30, output: 2.50),
        "gemini-3.6-flash": .init(input: 1.50, output: 7.50),
        // Introductory until 2026-12-31, then 1.50 / 7.50 (same sources): the lower, current price.
        "gemini-3.8-flash": .init(input: 0.75, output: 3.75),
        // Google Developers Blog via simonw/llm-gemini#102 and opencode.ai/data (2025).
        "gemini-embedding-001": .init(input: 0.15, output: 0),
    ]
}
