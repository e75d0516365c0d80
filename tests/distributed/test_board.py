"""The shared-memory check board's bookkeeping, in one process (no MPI): posting, arrival,
comparison as bytes, the two alternating slots, and the per-descriptor row cache."""

import numpy as np

from chainrule.distributed.mpi import _BOARD_WIDTH, _Board


class _Window:  # the board only calls Sync (a memory barrier) on its window
    def Sync(self):
        pass


def _board(ranks=2):
    return _Board(_Window(), None, np.zeros((ranks, 2, _BOARD_WIDTH), np.int64))


def _frozen(*values):
    a = np.array(values, dtype=np.int64)
    a.flags.writeable = False
    return a


def test_board_compares_every_ranks_descriptor():
    b = _board(3)
    mine = _frozen(1, 7, 0, 1, 3)
    b.post(0, 1, b.row(mine))
    b.post(2, 1, b.row((1, 7, 0, 1, 3)))
    assert not b.arrived(1)                      # rank 1 has not posted check 1
    b.post(1, 1, b.row([1, 7, 0, 1, 3]))
    assert b.arrived(1) and b.same(1, b.row(mine))
    # check 2 goes to the other slot; rank 1 passes another shape
    b.post(0, 2, b.row(mine))
    b.post(1, 2, b.row((1, 7, 0, 1, 4)))
    assert not b.arrived(2)
    b.post(2, 2, b.row(mine))
    assert b.arrived(2) and not b.same(2, b.row(mine))
    table = b.read(2)
    assert table.shape == (3, _BOARD_WIDTH - 1)
    assert table[:, :5].tolist() == [[1, 7, 0, 1, 3], [1, 7, 0, 1, 4], [1, 7, 0, 1, 3]]
    assert (table[:, 5:] == -2).all()            # the padding
    # a shorter descriptor differs from a longer one that starts the same
    b.post(0, 3, b.row((1, 7, 0)))
    b.post(1, 3, b.row((1, 7, 0, 1)))
    b.post(2, 3, b.row((1, 7, 0)))
    assert b.arrived(3) and not b.same(3, b.row((1, 7, 0)))


def test_board_rows_are_remembered_only_for_immutable_descriptors():
    b = _board()
    frozen = _frozen(1, 2, 3)
    assert b.row(frozen) is b.row(frozen)       # the cached bytes
    changing = np.array([1, 2, 3], dtype=np.int64)
    first = b.row(changing)
    changing[2] = 4                              # a writable array may change: not cached
    assert b.row(changing) != first
    assert np.frombuffer(b.row(changing), np.int64)[:4].tolist() == [1, 2, 4, -2]
