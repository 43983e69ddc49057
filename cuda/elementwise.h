// elementwise.h: the element-wise steps between layers.
//
//   add:     y[i] = T(A(a[i]) + A(b[i]))   A = acc_t<T>  (residual adds; routed + shared): fp32, or
//            one double add for T = double (the reference's exact mode)
//   convert: y[i] = To(fp32(x[i]))                       (e.g. the router's fp32 input)
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {

template <class T>
void add(const DeviceTensor<T>& a, const DeviceTensor<T>& b, DeviceTensor<T>& y);

template <class Ti, class To>
void convert(const DeviceTensor<Ti>& x, DeviceTensor<To>& y);

}  // namespace hyoracle::cuda
