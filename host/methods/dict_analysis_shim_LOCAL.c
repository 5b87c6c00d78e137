#include "methods/dict_analysis.h"
int dk_dict_analyse(dk_method_job *job, const dk_dict_model *m, const dk_dict_norm *nrm, const dk_dict_set *rows,
                    const dk_dict_set *base_ft, const dk_dict_analysis_cfg *cfg, const char *base, cJSON *sum,
                    dk_err *err) { (void)job,(void)m,(void)nrm,(void)rows,(void)base_ft,(void)cfg,(void)base,(void)sum,(void)err; return 0; }
int dk_dict_export_saelens(const dk_dict_model *m, const dk_dict_norm *nrm, const char *dir, const char *model_name,
                           int64_t layer, const char *hook_name, dk_err *err) { (void)m,(void)nrm,(void)dir,(void)model_name,(void)layer,(void)hook_name,(void)err; return 0; }
