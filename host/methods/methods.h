/* methods.h — the diffing methods diffkit runs, one dk_method_spec each (method_job.h): jobs/diff_<method>.c
 * hands its spec to dk_method_main. */
#ifndef DK_METHODS_METHODS_H
#define DK_METHODS_METHODS_H

#include "methods/method_job.h"

extern const dk_method_spec dk_method_kl;   /* kl.c */
extern const dk_method_spec dk_method_diff_mining;   /* diff_mining.c (job diff_mining) */
extern const dk_method_spec dk_method_activation_difference_lens;   /* adl.c */
extern const dk_method_spec dk_method_activation_analysis;   /* activation_analysis.c */
extern const dk_method_spec dk_method_pca;  /* pca.c */
extern const dk_method_spec dk_method_sae_difference;   /* dict_job.c (job diff_sae) */
extern const dk_method_spec dk_method_crosscoder;   /* dict_job.c (job diff_crosscoder) */
extern const dk_method_spec dk_method_weight_amplification;   /* amplification_run.c (job diff_amplification) */

#endif
