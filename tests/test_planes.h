// A weight tensor's planes owned by a test, and the tern_weight that views
// them as the loader (runtime/weights.c) would.
#ifndef TERN_TESTS_TEST_PLANES_H
#define TERN_TESTS_TEST_PLANES_H

#include <cstdint>
#include <vector>

#include "formats/encoding.h"
#include "kernels/kernels.h"

struct TestPlanes {
    tern_tensor_desc desc{};
    std::vector<uint8_t> values, zeros, index;
    std::vector<uint16_t> scales;
    tern_weight weight() const {
        tern_weight w{};
        w.encoding = desc.encoding;
        w.layout = desc.layout;
        w.rows = desc.dims[0];
        w.cols = desc.dims[1];
        w.values = values.data();
        w.scales = scales.data();
        w.zeros = zeros.empty() ? nullptr : zeros.data();
        w.index = index.empty() ? nullptr : index.data();
        w.group_size = desc.group_size;
        w.tile_rows = desc.tile_rows;
        w.sparse_n = desc.sparse_n;
        w.sparse_m = desc.sparse_m;
        w.flags = desc.flags;
        return w;
    }
};

#endif
