"""Analysis: scan wheels, resolve every need with ld.so/dyld rules, and judge the result (checks)."""
