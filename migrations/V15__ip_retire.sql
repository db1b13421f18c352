-- Retiring IPs (issue 17): `DELETE /v1/ips/{id}` marks an IP `retired` instead of
-- deleting it, so its history (usage, rollups, events, warm-up) stays. A retired
-- IP takes no work, is left out of lists, and its address may be registered
-- again (to any tenant): the address is unique among IPs that are not retired.

ALTER TABLE smtp_ips DROP CONSTRAINT smtp_ips_status_check;
ALTER TABLE smtp_ips
    ADD CONSTRAINT smtp_ips_status_check CHECK (status IN ('active', 'paused', 'retired')),
    ADD COLUMN retired_at timestamptz,
    ADD CONSTRAINT smtp_ips_retired_at CHECK ((status = 'retired') = (retired_at IS NOT NULL));

ALTER TABLE smtp_ips DROP CONSTRAINT smtp_ips_address_key;
CREATE UNIQUE INDEX smtp_ips_address ON smtp_ips (address) WHERE status <> 'retired';
