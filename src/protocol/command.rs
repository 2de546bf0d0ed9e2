//! Client command bytes (the first byte of every command packet) and their names.

/// `COM_QUIT`
pub const QUIT: u8 = 0x01;
/// `COM_INIT_DB`
pub const INIT_DB: u8 = 0x02;
/// `COM_QUERY`
pub const QUERY: u8 = 0x03;
/// `COM_FIELD_LIST`
pub const FIELD_LIST: u8 = 0x04;
/// `COM_STATISTICS`
pub const STATISTICS: u8 = 0x09;
/// `COM_REFRESH` (flush caches or logs; forwarded to the primary).
pub const REFRESH: u8 = 0x07;
/// `COM_DEBUG` (debug information to the server's error log; forwarded to the primary).
pub const DEBUG: u8 = 0x0D;
/// `COM_PROCESS_KILL`
pub const PROCESS_KILL: u8 = 0x0C;
/// `COM_PING`
pub const PING: u8 = 0x0E;
/// `COM_CHANGE_USER`
pub const CHANGE_USER: u8 = 0x11;
/// `COM_STMT_PREPARE`
pub const STMT_PREPARE: u8 = 0x16;
/// `COM_STMT_EXECUTE`
pub const STMT_EXECUTE: u8 = 0x17;
/// `COM_STMT_SEND_LONG_DATA`
pub const STMT_SEND_LONG_DATA: u8 = 0x18;
/// `COM_STMT_CLOSE`
pub const STMT_CLOSE: u8 = 0x19;
/// `COM_STMT_RESET`
pub const STMT_RESET: u8 = 0x1A;
/// `COM_SET_OPTION`
pub const SET_OPTION: u8 = 0x1B;
/// `COM_STMT_FETCH`
pub const STMT_FETCH: u8 = 0x1C;
/// `COM_RESET_CONNECTION`
pub const RESET_CONNECTION: u8 = 0x1F;
/// `COM_STMT_BULK_EXECUTE` (MariaDB, with `MARIADB_CLIENT_STMT_BULK_OPERATIONS`): one prepared
/// statement run for an array of parameter rows.
pub const STMT_BULK_EXECUTE: u8 = 0xFA;

/// A short name for logs and metric labels (a bounded set).
pub fn name(command: u8) -> &'static str {
    match command {
        QUIT => "quit",
        INIT_DB => "init_db",
        QUERY => "query",
        FIELD_LIST => "field_list",
        STATISTICS => "statistics",
        REFRESH => "refresh",
        DEBUG => "debug",
        PROCESS_KILL => "process_kill",
        PING => "ping",
        CHANGE_USER => "change_user",
        STMT_PREPARE => "stmt_prepare",
        STMT_EXECUTE => "stmt_execute",
        STMT_SEND_LONG_DATA => "stmt_send_long_data",
        STMT_CLOSE => "stmt_close",
        STMT_RESET => "stmt_reset",
        SET_OPTION => "set_option",
        STMT_FETCH => "stmt_fetch",
        RESET_CONNECTION => "reset_connection",
        STMT_BULK_EXECUTE => "stmt_bulk_execute",
        _ => "other",
    }
}
