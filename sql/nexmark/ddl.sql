-- The three Nexmark streams, as the queries in this directory read them. The benchmark harness
-- (benches/nexmark.rs) creates them with its own event count and rate.
CREATE SOURCE person WITH (connector = 'nexmark', 'nexmark.table.type' = 'person',
                           'nexmark.events' = 1000000, 'nexmark.rate' = 0);
CREATE SOURCE auction WITH (connector = 'nexmark', 'nexmark.table.type' = 'auction',
                            'nexmark.events' = 1000000, 'nexmark.rate' = 0);
CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid',
                        'nexmark.events' = 1000000, 'nexmark.rate' = 0);
