/* nn/params: contiguous aligned layout, zero padding, name rules, clone/copy/zero_grad. */
#include <string.h>

#include "harness.h"
#include "metalearn/params.h"

static ml_params *make_abc(void) {
  ml_params *p = ml_params_new();
  CHECK(p != NULL);
  CHECK_OK(ml_params_add(p, "a", 1, (int64_t[]){3}));
  CHECK_OK(ml_params_add(p, "b", 2, (int64_t[]){2, 5}));
  CHECK_OK(ml_params_add(p, "c", 3, (int64_t[]){1, 17, 1}));
  CHECK_OK(ml_params_add(p, "d", 4, (int64_t[]){2, 2, 2, 2}));
  return p;
}

ML_TEST(layout_offsets_alignment_padding) {
  ml_params *p = make_abc();
  CHECK_OK(ml_params_finalize(p));
  CHECK(p->finalized && p->count == 4);
  /* a: [0,3) b: [16,26) c: [32,49) d: [64,80) -> 80 floats */
  CHECK(p->items[0].offset == 0);
  CHECK(p->items[1].offset == 16);
  CHECK(p->items[2].offset == 32);
  CHECK(p->items[3].offset == 64);
  CHECK(p->numel == 80);
  CHECK(ml_params_count_scalars(p) == 3 + 10 + 17 + 16);
  for (int64_t i = 0; i < p->count; i++) {
    const ml_param *it = &p->items[i];
    CHECK((uintptr_t)it->value.data % 64 == 0);
    CHECK((uintptr_t)it->grad.data % 64 == 0);
    CHECK(it->value.data == p->data + it->offset);
    CHECK(it->grad.data == p->grad + it->offset);
    CHECK(it->grad.numel == it->value.numel);
  }
  CHECK(p->items[1].value.ndim == 2 && p->items[1].value.shape[0] == 2 && p->items[1].value.shape[1] == 5);
  CHECK(p->items[2].value.numel == 17);
  for (int64_t i = 0; i < p->numel; i++) CHECK(p->data[i] == 0 && p->grad[i] == 0);
  /* writing every tensor through its view leaves the padding zero */
  for (int64_t i = 0; i < p->count; i++) {
    ml_tensor_fill(&p->items[i].value, 1.0f + (float)i);
    ml_tensor_fill(&p->items[i].grad, -1.0f);
  }
  int64_t ones = 0;
  for (int64_t i = 0; i < p->numel; i++) {
    bool inside = false;
    for (int64_t k = 0; k < p->count; k++)
      if (i >= p->items[k].offset && i < p->items[k].offset + p->items[k].value.numel) {
        inside = true;
        CHECK(p->data[i] == 1.0f + (float)k);
      }
    if (!inside) CHECK_MSG(p->data[i] == 0 && p->grad[i] == 0, "padding at %lld not zero", (long long)i);
    ones += inside;
  }
  CHECK(ones == ml_params_count_scalars(p));
  ml_params_zero_grad(p);
  for (int64_t i = 0; i < p->numel; i++) CHECK(p->grad[i] == 0);
  ml_params_free(p);
}

ML_TEST(find_and_name_rules) {
  ml_params *p = make_abc();
  CHECK(ml_params_find(p, "a") == 0);
  CHECK(ml_params_find(p, "d") == 3);
  CHECK(ml_params_find(p, "zz") == -1);
  CHECK(ml_params_add(p, "b", 1, (int64_t[]){4}) == ML_ERR_ARG); /* duplicate */
  CHECK(strstr(ml_last_error(), "duplicate") != NULL);
  char name[ML_PARAM_NAME_MAX + 1];
  memset(name, 'x', sizeof name);
  name[ML_PARAM_NAME_MAX] = 0; /* 96 chars: too long */
  CHECK(ml_params_add(p, name, 1, (int64_t[]){1}) == ML_ERR_ARG);
  name[ML_PARAM_NAME_MAX - 1] = 0; /* 95 chars: fits with its NUL */
  CHECK_OK(ml_params_add(p, name, 1, (int64_t[]){1}));
  CHECK(ml_params_add(p, "", 1, (int64_t[]){1}) != ML_OK);
  CHECK(ml_params_add(p, "neg", 2, (int64_t[]){2, -1}) != ML_OK);
  CHECK(ml_params_add(p, "five", 5, (int64_t[]){1, 1, 1, 1, 1}) != ML_OK);
  CHECK(ml_params_add(p, "huge", 2, (int64_t[]){INT64_MAX / 2, 4}) != ML_OK);
  CHECK(p->count == 5);
  CHECK_OK(ml_params_finalize(p));
  CHECK(ml_params_add(p, "late", 1, (int64_t[]){1}) == ML_ERR_ARG);
  CHECK(ml_params_finalize(p) == ML_ERR_ARG);
  ml_params_free(p);
}

ML_TEST(clone_copy) {
  ml_params *p = make_abc();
  CHECK_OK(ml_params_finalize(p));
  ml_test_fill(p->data, p->numel, 3, -1, 1);
  ml_params *c = ml_params_clone_layout(p);
  CHECK(c != NULL && c->finalized && c->count == p->count && c->numel == p->numel);
  for (int64_t i = 0; i < p->count; i++) {
    CHECK(!strcmp(c->items[i].name, p->items[i].name));
    CHECK(c->items[i].offset == p->items[i].offset);
    CHECK(ml_tensor_same_shape(&c->items[i].value, &p->items[i].value));
  }
  for (int64_t i = 0; i < c->numel; i++) CHECK(c->data[i] == 0);
  ml_params_copy_data(c, p);
  CHECK(memcmp(c->data, p->data, (size_t)p->numel * sizeof(float)) == 0);
  ml_params_free(c);
  ml_params_free(p);
}

ML_TEST(empty_list) {
  ml_params *p = ml_params_new();
  CHECK_OK(ml_params_finalize(p));
  CHECK(p->numel == 0 && p->count == 0 && ml_params_count_scalars(p) == 0);
  ml_params_zero_grad(p);
  ml_params_free(p);
  ml_params_free(NULL);
}
