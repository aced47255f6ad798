/* stub_layer.c: an empty LD_PRELOAD library standing in for libmirrord_layer.so in the exec_cli
 * tests, so they exercise the CLI (env, exit codes, intproxy/agent lifetime) without the layer. */
int mx_exec_cli_stub_layer_marker = 1;
