#include "CSQLiteGuard.h"

int clip_sqlite_harden(sqlite3 *db) {
    const int settings[][2] = {
        {SQLITE_DBCONFIG_DEFENSIVE, 1},
        {SQLITE_DBCONFIG_ENABLE_TRIGGER, 0},
        {SQLITE_DBCONFIG_ENABLE_VIEW, 0},
        {SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0},
    };
    for (unsigned i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        int applied = -1;
        int rc = sqlite3_db_config(db, settings[i][0], settings[i][1], &applied);
        if (rc != SQLITE_OK) return rc;
        if (applied != settings[i][1]) return SQLITE_ERROR;
    }
    return SQLITE_OK;
}
