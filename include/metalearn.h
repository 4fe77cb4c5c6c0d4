/* metalearn: the whole public API. */
#ifndef METALEARN_H
#define METALEARN_H

#include "metalearn/algos.h"
#include "metalearn/answers.h"
#include "metalearn/autograd.h"
#include "metalearn/base.h"
#include "metalearn/data.h"
#include "metalearn/dkt.h"
#include "metalearn/dist.h"
#include "metalearn/eval.h"
#include "metalearn/fewshot.h"
#include "metalearn/io.h"
#include "metalearn/kernels.h"
#include "metalearn/nn.h"
#include "metalearn/optim.h"
#include "metalearn/params.h"
#include "metalearn/practice.h"
#include "metalearn/ratings.h"
#include "metalearn/recommend.h"
#include "metalearn/report.h"
#include "metalearn/students.h"
#include "metalearn/tasks.h"
#include "metalearn/tensor.h"

#endif
