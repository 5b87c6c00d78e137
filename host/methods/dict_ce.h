/* dict_ce.h — the cross-entropy loss recovered by a dictionary's reconstruction spliced into the finetuned model
 * (dict_ce.c says how). Needs the job's models open (the dictionary jobs open them when
 * diffing.method.evaluation.ce_loss_recovered is true). */
#ifndef DK_METHODS_DICT_CE_H
#define DK_METHODS_DICT_CE_H

#include <stdint.h>

#include "methods/dict_data.h"
#include "methods/dict_model.h"
#include "methods/dict_norm.h"
#include "methods/method_job.h"

typedef struct dk_dict_ce {
    int64_t tokens;          /* predicted positions */
    double ce_clean, ce_spliced, ce_ablated;
    double frac_recovered;   /* (ablated − spliced) / (ablated − clean) */
} dk_dict_ce;

/* Collective. set: the rows the dictionary was trained on (its target), validation split; the first max_seqs
 * sequences of each dataset. 0, or -1 with err. */
int dk_dict_ce_recovered(dk_method_job *job, const dk_dict_model *m, const dk_dict_norm *nrm, const dk_dict_set *set,
                         int64_t max_seqs, dk_dict_ce *out, dk_err *err);

#endif
