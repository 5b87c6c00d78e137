/* interp.h — resolves ${...} interpolations in a configuration tree in place (rules in config.h). */
#ifndef DK_CONFIG_INTERP_H
#define DK_CONFIG_INTERP_H

#include "core/error.h"
#include "node.h"

/* 0, or -1 with err (code 2) naming the key holding the bad interpolation and where it was written. */
int dk_cfg_resolve_interpolations(dk_cfg_node *root, dk_err *err);

#endif
