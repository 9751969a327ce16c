//! The store conformance suite, run against a real PostgreSQL server, each case in its own
//! schema.

sealtrail_store::conformance_suite!(optional sealtrail_store_postgres::testing::fresh_store());
