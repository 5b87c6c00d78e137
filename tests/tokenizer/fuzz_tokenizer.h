/* fuzz_tokenizer.h — the libFuzzer entry point, shared by the libFuzzer build and fuzz_driver.c. */
#ifndef DK_FUZZ_TOKENIZER_H
#define DK_FUZZ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
