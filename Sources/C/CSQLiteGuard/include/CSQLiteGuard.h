#ifndef CSQLITEGUARD_H
#define CSQLITEGUARD_H

#include <sqlite3.h>

/// Configures a connection for a database file that may be hostile: SQLite's defensive mode (no writes to the
/// schema or shadow tables through SQL), triggers and views disabled (a clip index has none, so a file that brings
/// one cannot run it), and schema-defined functions untrusted. Returns SQLITE_OK or the first failing code.
/// In C because sqlite3_db_config is variadic, which Swift cannot call.
int clip_sqlite_harden(sqlite3 *db);

#endif
