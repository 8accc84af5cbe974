/* libprov.so.1: shipped by the provider wheel in provider/lib/, used by the consumer wheel. */
int prov_value(void) { return 3; }
