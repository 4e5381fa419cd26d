import os
import threading
import time

import pytest

from thinkgym.rewards.timeout import CallTimeout, call_with_timeout


def test_returns_value_and_reraises():
    assert call_with_timeout(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(divmod, 1, 0)


def test_hang_in_c_is_cut_off_from_a_thread():
    # pow(10, 10**9) is one C call: no Python-level interrupt could stop it.
    outcome = {}

    def run():
        start = time.monotonic()
        try:
            call_with_timeout(pow, 10, 10**9, timeout=0.5)
        except CallTimeout:
            outcome["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    assert outcome["seconds"] < 3
    assert call_with_timeout(pow, 2, 10) == 1024  # a fresh helper replaces the killed one


def test_concurrent_callers_get_their_own_answers():
    results = {}

    def run(i):
        results[i] = call_with_timeout(pow, i, 2)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * i for i in range(8)}


def test_works_inside_a_daemonic_worker_process():
    import multiprocessing

    with multiprocessing.get_context("forkserver").Pool(1) as pool:  # Pool workers are daemonic
        assert pool.apply(call_with_timeout, (os.getpid,)) != os.getpid()
