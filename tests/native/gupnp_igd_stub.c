/* Loaded in place of libgupnp-igd-1.0.so.4 (LD_LIBRARY_PATH) for Debian 12's
 * simple-whip-client only. That client links libsoup2, while libnice links
 * libgupnp-igd, which pulls in libsoup3; libsoup3 aborts in a process that already
 * has libsoup2 ("libsoup2 symbols detected"), so the packaged client cannot start.
 * libnice needs UPnP port mapping only to open NAT routers; with no IGD client
 * (a NULL thread) it skips it, which changes nothing on 127.0.0.1. */
void *gupnp_simple_igd_thread_new(void) { return 0; }
unsigned long gupnp_simple_igd_get_type(void) { return 20 << 2; } /* G_TYPE_OBJECT */
void gupnp_simple_igd_add_port(void) {}
void gupnp_simple_igd_remove_port_local(void) {}
