-- The statistics routes read the rollups under the tenant role (V5), like
-- every other tenant route: the role needs the per-campaign daily rollup.
GRANT SELECT ON campaign_daily_stats TO penguin_tenant;
