"""Which MySQL global variables cannot change at run time, for servers that do not say.

MySQL exposes no read-only flag for a variable (MariaDB has
``information_schema.SYSTEM_VARIABLES.READ_ONLY``): ``performance_schema.variables_info``
tells where a value came from and ``variables_metadata`` (8.3+) its type and scope, not whether
``SET GLOBAL`` may change it. So the list is kept here:

- ``MEASURED_9_7``: measured on the lab's MySQL 9.7.4 (Debian's 9.7.4-2): every variable of
  ``performance_schema.global_variables`` was set to its own value with ``SET GLOBAL`` on a
  throwaway server, and these are the ones refused with error 1238 ("is a read only
  variable").
- ``BEFORE_9_0``: read-only in MySQL 8.0 and 8.4 (their manuals' "Dynamic: No"), gone in 9.x.
- ``PLUGINS``: read-only variables of the X plugin, which the lab does not load.

A variable in none of them is taken as dynamic: a difference in it shows as drift, never
silently nothing. Names are lower case.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


MEASURED_9_7 = _names(
    """
admin_address admin_port auto_generate_certs back_log basedir bind_address
binlog_gtid_simple_recovery binlog_rotate_encryption_master_key_at_startup
binlog_row_event_max_size build_id caching_sha2_password_auto_generate_rsa_keys
caching_sha2_password_private_key_path caching_sha2_password_public_key_path
character_set_system character_sets_dir container_aware core_file create_admin_listener_thread
datadir disabled_storage_engines disconnect_on_expired_password ft_max_word_len ft_min_word_len
ft_query_expansion_limit ft_stopword_file gtid_executed gtid_owned have_compress
have_dynamic_loading have_geometry have_profiling have_query_cache have_rtree_keys
have_statement_timeout have_symlink hostname init_file innodb_adaptive_hash_index_parts
innodb_api_disable_rowlock innodb_api_enable_binlog innodb_api_enable_mdl
innodb_autoinc_lock_mode innodb_buffer_pool_chunk_size innodb_buffer_pool_instances
innodb_buffer_pool_load_at_startup innodb_data_file_path innodb_data_home_dir
innodb_dedicated_server innodb_directories innodb_doublewrite_batch_size innodb_doublewrite_dir
innodb_doublewrite_files innodb_doublewrite_pages innodb_flush_method
innodb_force_load_corrupted innodb_force_recovery innodb_ft_cache_size innodb_ft_max_token_size
innodb_ft_min_token_size innodb_ft_sort_pll_degree innodb_ft_total_cache_size
innodb_log_group_home_dir innodb_native_foreign_keys innodb_numa_interleave innodb_open_files
innodb_page_cleaners innodb_page_size innodb_purge_threads innodb_read_io_threads
innodb_read_only innodb_rollback_on_timeout innodb_sort_buffer_size innodb_sync_array_size
innodb_temp_data_file_path innodb_temp_tablespaces_dir innodb_undo_directory
innodb_use_native_aio innodb_validate_tablespace_paths innodb_version innodb_write_io_threads
large_files_support large_page_size large_pages lc_messages_dir license locked_in_memory log_bin
log_bin_basename log_bin_index log_error log_replica_updates log_slave_updates
lower_case_file_system lower_case_table_names max_digest_length myisam_mmap_size
myisam_recover_options ngram_token_size open_files_limit performance_schema
performance_schema_accounts_size performance_schema_digests_size performance_schema_error_size
performance_schema_events_stages_history_long_size performance_schema_events_stages_history_size
performance_schema_events_statements_history_long_size
performance_schema_events_statements_history_size
performance_schema_events_transactions_history_long_size
performance_schema_events_transactions_history_size
performance_schema_events_waits_history_long_size performance_schema_events_waits_history_size
performance_schema_hosts_size performance_schema_max_cond_classes
performance_schema_max_cond_instances performance_schema_max_digest_length
performance_schema_max_file_classes performance_schema_max_file_handles
performance_schema_max_file_instances performance_schema_max_index_stat
performance_schema_max_logger_classes performance_schema_max_memory_classes
performance_schema_max_metadata_locks performance_schema_max_meter_classes
performance_schema_max_metric_classes performance_schema_max_mutex_classes
performance_schema_max_mutex_instances performance_schema_max_prepared_statements_instances
performance_schema_max_program_instances performance_schema_max_rwlock_classes
performance_schema_max_rwlock_instances performance_schema_max_socket_classes
performance_schema_max_socket_instances performance_schema_max_sql_text_length
performance_schema_max_stage_classes performance_schema_max_statement_classes
performance_schema_max_statement_stack performance_schema_max_table_handles
performance_schema_max_table_instances performance_schema_max_table_lock_stat
performance_schema_max_thread_classes performance_schema_max_thread_instances
performance_schema_session_connect_attrs_size performance_schema_setup_actors_size
performance_schema_setup_objects_size performance_schema_users_size
persist_only_admin_x509_subject persist_sensitive_variables_in_plaintext persisted_globals_load
pid_file plugin_dir port protocol_version relay_log relay_log_basename relay_log_index
relay_log_recovery relay_log_space_limit replica_load_tmpdir replica_skip_errors report_host
report_password report_port report_user secure_file_priv server_memory server_uuid
sha256_password_auto_generate_rsa_keys sha256_password_private_key_path
sha256_password_public_key_path skip_external_locking skip_name_resolve skip_networking
skip_replica_start skip_show_database skip_slave_start slave_load_tmpdir slave_skip_errors
socket ssl_fips_mode system_time_zone table_open_cache_instances thread_handling thread_stack
tls_certificates_enforced_validation tmpdir version version_comment version_compile_machine
version_compile_os version_compile_zlib version_with_update
"""
)

BEFORE_9_0 = _names(
    """
default_authentication_plugin have_openssl have_ssl innodb_log_file_size
innodb_log_files_in_group old relay_log_info_file
"""
)

PLUGINS = _names(
    """
mysqlx_bind_address mysqlx_port mysqlx_port_open_timeout mysqlx_socket
"""
)

_SERIES_9 = (9, 0, 0)


def mysql_read_only(name: str, version: tuple[int, int, int]) -> bool:
    """Whether MySQL ``version`` cannot change ``name`` at run time, as far as harestart knows."""
    if name in MEASURED_9_7 or name in PLUGINS:
        return True
    return version < _SERIES_9 and name in BEFORE_9_0
