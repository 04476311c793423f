-- Keys are identifiers (resident ID numbers, credit codes, serials), never sorted for people
-- to read: compared byte by byte ("C") instead of by the rules of the database's locale
-- (zh_CN, en_US: a strcoll call per comparison). Every pushed change probes current_key by key.
-- Lookups by key and downloads in key order work as before; only the order of keys with
-- letters of different case or non-ASCII characters in a download changes. Neither table is
-- rewritten; current_key's primary key index is rebuilt, with the table locked meanwhile.
ALTER TABLE current_key ALTER COLUMN key TYPE text COLLATE "C";
ALTER TABLE change ALTER COLUMN key TYPE text COLLATE "C";
