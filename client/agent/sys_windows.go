//go:build windows

package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// readBootID is the time the machine booted: now less the time since boot
// (GetTickCount64). See boot.go for how two are compared.
func readBootID() (string, error) {
	now := time.Now()
	return bootTimeID(now.Add(-windows.DurationSinceBoot()), now), nil
}

// shellPath is the system directory's program (cmd.exe), not one PATH
// finds.
func shellPath(name string) (string, error) {
	sys, err := windows.GetSystemDirectory()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	return filepath.Join(sys, name), nil
}

// procTree is a command's processes on Windows: a job object, which every
// process the command starts joins, and which kills them all when its last
// handle closes (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE): when the agent dies,
// the kernel closes it, as Pdeathsig does on Linux but for the whole tree.
//
// The start gate: cmd.exe is created suspended, assigned to the job, and
// resumed by run once the agent has recorded the operation, so that
// nothing of the command runs outside the job or before the record.
type procTree struct {
	cmd *exec.Cmd
	job windows.Handle
}

// terminatedCode is the exit code of a command killed with its job: read
// as an int32, -1, as a command killed by a signal reports on Linux.
const terminatedCode = 0xFFFFFFFF

// newProcTree makes the job and readies cmd to start suspended, in a
// process group of its own (for CTRL_BREAK), with cmdLine verbatim.
func newProcTree(cmd *exec.Cmd, cmdLine string) (*procTree, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("create a job object: %w", err)
	}
	t := &procTree{cmd: cmd, job: job}
	if err := t.setKillOnClose(true); err != nil {
		windows.CloseHandle(job)
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		CmdLine:       cmdLine,
		CreationFlags: windows.CREATE_SUSPENDED | windows.CREATE_NEW_PROCESS_GROUP,
	}
	return t, nil
}

// setKillOnClose sets or clears JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE.
func (t *procTree) setKillOnClose(on bool) error {
	var info windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION
	if on {
		info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	}
	_, err := windows.SetInformationJobObject(t.job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info)))
	if err != nil {
		return fmt.Errorf("set the job object's limits: %w", err)
	}
	return nil
}

// started puts the suspended cmd.exe into the job; when it can't, it kills
// it (it never ran) and says why.
func (t *procTree) started() error {
	pid := uint32(t.cmd.Process.Pid)
	p, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, pid)
	if err == nil {
		err = windows.AssignProcessToJobObject(t.job, p)
		windows.CloseHandle(p)
	}
	if err != nil {
		t.cmd.Process.Kill()
		return fmt.Errorf("put process %d into a job object: %w", pid, err)
	}
	return nil
}

// run resumes cmd.exe's main thread (its only one: it was created
// suspended). Should that fail, the job is killed: the command ends as
// killed rather than hanging.
func (t *procTree) run() {
	if err := resumeProcess(uint32(t.cmd.Process.Pid)); err != nil {
		windows.TerminateJobObject(t.job, terminatedCode)
	}
}

// resumeProcess resumes the threads of process pid.
func resumeProcess(pid uint32) error {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPTHREAD, 0)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(snap)
	te := windows.ThreadEntry32{Size: uint32(unsafe.Sizeof(windows.ThreadEntry32{}))}
	resumed := 0
	for err = windows.Thread32First(snap, &te); err == nil; err = windows.Thread32Next(snap, &te) {
		if te.OwnerProcessID != pid {
			continue
		}
		th, err := windows.OpenThread(windows.THREAD_SUSPEND_RESUME, false, te.ThreadID)
		if err != nil {
			return err
		}
		_, err = windows.ResumeThread(th)
		windows.CloseHandle(th)
		if err != nil {
			return err
		}
		resumed++
	}
	if !errors.Is(err, windows.ERROR_NO_MORE_FILES) {
		return err
	}
	if resumed == 0 {
		return fmt.Errorf("process %d has no thread to resume", pid)
	}
	return nil
}

// kill stops the command: hard, every process of the job
// (TerminateJobObject); else CTRL_BREAK to its process group, which
// reaches it only when the agent shares a console with it (not as a
// service): the hard kill follows after killGrace either way.
func (t *procTree) kill(hard bool) {
	if hard {
		windows.TerminateJobObject(t.job, terminatedCode)
		return
	}
	windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(t.cmd.Process.Pid))
}

// close lets go of the job once the command ended: what the command left
// running (a service it started) keeps running, as on Linux.
func (t *procTree) close() {
	t.setKillOnClose(false)
	windows.CloseHandle(t.job)
}

// lockRoot takes an exclusive lock on path (LockFileEx), so that two agents
// never work on one root; the returned func releases it.
func lockRoot(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	h, ol := windows.Handle(f.Fd()), new(windows.Overlapped)
	err = windows.LockFileEx(h, windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("another agent runs on this root (%s is locked): %w", path, err)
	}
	return func() {
		windows.UnlockFileEx(h, 0, 1, 0, ol)
		f.Close()
	}, nil
}

// secureRoot gives root the access of rootSDDL (the change propagates to
// what is under it).
func secureRoot(root string) error {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return fmt.Errorf("read the agent's account: %w", err)
	}
	sd, err := windows.SecurityDescriptorFromString(rootSDDL(u.User.Sid.String()))
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	err = windows.SetNamedSecurityInfo(root, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("restrict access to %s: %w", root, err)
	}
	return nil
}

// diskSize is the size of the volume holding path.
func diskSize(path string) (int64, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, err
	}
	var free, total, totalFree uint64
	if err := windows.GetDiskFreeSpaceEx(p, &free, &total, &totalFree); err != nil {
		return 0, err
	}
	return int64(total), nil
}
