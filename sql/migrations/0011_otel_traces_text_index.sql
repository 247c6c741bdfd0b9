-- Data-skipping indexes for the UI's text search in Input and Output (`sql/queries/ui_traces_text.sql` asks
-- `lowerUTF8(Input) LIKE '%text%'`, the indexed expression): a bloom filter of each granule's 4-grams, 64 KiB
-- and 2 hash functions a granule (~3,000 spans of 0.5-2 KB text: a 4-gram filter of that size stays sparse
-- enough to rule granules out, a 3-gram one of 16 KiB did not rule out one, bench/RESULTS.md "UI"). A text
-- none of whose 4-grams is in a granule skips it; a common word is in every granule and gains nothing.
-- MATERIALIZE builds them for spans stored before this migration (a background mutation).
ALTER TABLE otel_traces ADD INDEX IF NOT EXISTS idx_input_ngram lowerUTF8(Input) TYPE ngrambf_v1(4, 65536, 2, 0) GRANULARITY 1;

ALTER TABLE otel_traces ADD INDEX IF NOT EXISTS idx_output_ngram lowerUTF8(Output) TYPE ngrambf_v1(4, 65536, 2, 0) GRANULARITY 1;

ALTER TABLE otel_traces MATERIALIZE INDEX idx_input_ngram;

ALTER TABLE otel_traces MATERIALIZE INDEX idx_output_ngram;
