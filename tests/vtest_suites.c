/*
 * vtest_suites.c - the list of every test suite, in the order they run.
 * Shared by the hosted runner and the test kernel. Cheap, focused suites
 * come first; the scale and randomized model tests last.
 */
#include "vtest.h"

extern const struct vtest_suite suite_api;
extern const struct vtest_suite suite_policy;
extern const struct vtest_suite suite_constraints;
extern const struct vtest_suite suite_import;
extern const struct vtest_suite suite_misuse;
extern const struct vtest_suite suite_misuse_twins;
extern const struct vtest_suite suite_edges;
extern const struct vtest_suite suite_hash;
extern const struct vtest_suite suite_qcache;
extern const struct vtest_suite suite_sleep;
extern const struct vtest_suite suite_model;

const struct vtest_suite *const vtest_suites[] = {
    &suite_api, &suite_policy, &suite_constraints, &suite_import,
    &suite_misuse, &suite_misuse_twins, &suite_edges, &suite_hash, &suite_qcache, &suite_sleep, &suite_model,
};
const size_t vtest_suite_count = sizeof(vtest_suites) / sizeof(vtest_suites[0]);
